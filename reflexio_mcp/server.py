"""Assembles the MCP server: settings -> one Backend -> tools and resources."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from mcp.server import MCPServer

from reflexio_mcp import __version__
from reflexio_mcp.backend import Backend
from reflexio_mcp.embedded_store import EmbeddedStore, default_data_dir
from reflexio_mcp.reflexio_client import ReflexioClient
from reflexio_mcp.resources import register_resources
from reflexio_mcp.settings import Settings
from reflexio_mcp.tools import register_tools
from reflexio_mcp.unknown_arguments import reject_unknown_arguments


def build_backend(settings: Settings) -> Backend:
    """Reflexio when the settings name it (or a URL), else the embedded store."""
    if not settings.uses_reflexio:
        return EmbeddedStore(settings.data_dir or default_data_dir())
    return ReflexioClient(
        settings.reflexio_url,
        api_key=settings.api_key,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_retries=settings.max_retries,
    )


def build_server(settings: Settings, backend: Backend | None = None) -> MCPServer:
    """An MCP server whose tools and resources all go to `backend` (default: from settings).

    The backend is opened when the server starts and closed when it stops.
    """
    store = backend if backend is not None else build_backend(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncGenerator[None]:
        async with store:
            yield

    server = MCPServer(
        "reflexio",
        title="Reflexio interactions",
        version=__version__,
        instructions=_instructions(store, settings),
        website_url="https://github.com/ReflexioAI/reflexio",
        lifespan=lifespan,
        log_level=settings.log_level,
        middleware=[reject_unknown_arguments(lambda: server.list_tools())],
    )
    register_tools(
        server,
        store,
        default_user_id=settings.user_id,
        allow_admin=settings.allow_admin,
        open_world=store.remote,
    )
    register_resources(server, store, default_user_id=settings.user_id)
    return server


def _instructions(backend: Backend, settings: Settings) -> str:
    learning = (
        "Reflexio learns user profiles and playbooks from what is published."
        if backend.learns
        else "Nothing is learned from them here: profiles and playbooks need a Reflexio "
        "backend (REFLEXIO_URL)."
    )
    return (
        f"Memory of past conversations, kept by {backend.description}. {learning} "
        "Call publish_interaction after an exchange worth remembering; search_interactions to "
        "recall what was said before; get_interactions to list the newest turns; "
        "delete_interaction when the user asks to forget something. "
        f"Calls that name no user_id act for {settings.user_id!r}."
    )
