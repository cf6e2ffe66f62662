"""Assembles the MCP server: settings -> one Backend -> tools and resources."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
from mcp.server import MCPServer

from reflexio_mcp import __version__
from reflexio_mcp.backend import Backend
from reflexio_mcp.durable_reflexio import DurableReflexio
from reflexio_mcp.embedded_store import EmbeddedStore
from reflexio_mcp.outbox import Outbox
from reflexio_mcp.reflexio_client import ReflexioClient
from reflexio_mcp.request_deadline import request_deadline
from reflexio_mcp.resources import register_resources
from reflexio_mcp.settings import Settings
from reflexio_mcp.state import AppState
from reflexio_mcp.stdio_guard import answer_unreadable
from reflexio_mcp.tool_call_errors import tool_call_errors
from reflexio_mcp.tools import build_tools

logger = logging.getLogger("reflexio_mcp")

ENABLE_ADMIN = (
    "it reads every user's interactions, so it is off unless reflexio-mcp starts with "
    "--allow-admin (or REFLEXIO_MCP_ALLOW_ADMIN=1)"
)


def build_backend(settings: Settings) -> Backend:
    """Reflexio (behind the outbox) when the settings name it (or a URL), else the embedded
    store."""
    if not settings.uses_reflexio:
        return EmbeddedStore(settings.data_folder)
    client = ReflexioClient(
        settings.reflexio_url,
        api_key=settings.api_key,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_retries=settings.max_retries,
    )
    outbox = Outbox(
        settings.data_folder,
        client.url,
        max_rows=settings.outbox_max_rows,
        max_bytes=int(settings.outbox_max_mb * 2**20),
    )
    return DurableReflexio(
        client,
        outbox,
        publish_rate=settings.publish_rate,
        timeout=settings.timeout,
        deadline=settings.deadline,
    )


def build_server(settings: Settings, backend: Backend | None = None) -> MCPServer[AppState]:
    """An MCP server whose tools and resources all go to `backend` (default: from settings).

    The backend is opened when the server starts and closed when it stops. With Reflexio, one
    reachability probe runs beside the first requests and logs a warning if it fails.
    """
    store = backend if backend is not None else build_backend(settings)
    session_id = f"reflexio-mcp-{uuid.uuid4().hex}"

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState]:
        async with store, anyio.create_task_group() as background:
            if store.remote:
                background.start_soon(_probe, store, settings.user_id)
            yield AppState(store, settings.user_id, session_id)
            background.cancel_scope.cancel()

    tools = build_tools(open_world=store.remote, allow_admin=settings.allow_admin)
    server = MCPServer[AppState](
        "reflexio",
        title="Reflexio interactions",
        version=__version__,
        instructions=_instructions(store, settings),
        website_url="https://github.com/ReflexioAI/reflexio",
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=tools,
        middleware=[
            answer_unreadable,
            tool_call_errors(
                tools,
                not_enabled={} if settings.allow_admin else {"get_all_interactions": ENABLE_ADMIN},
            ),
            request_deadline(settings.deadline),
        ],
    )
    register_resources(server, store, default_user_id=settings.user_id)
    return server


async def _probe(backend: Backend, user_id: str) -> None:
    status = await backend.status(user_id)
    if not status.reachable:
        logger.warning(
            "%s; reads fail until it answers, and publishes wait in the outbox", status.detail
        )


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
