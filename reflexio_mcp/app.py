"""Assembles the MCP server: settings -> one Backend -> tools and resources."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import RequestStateSecurity
from pydantic import AnyHttpUrl

from reflexio_mcp import __version__
from reflexio_mcp.backends.from_settings import build_backend
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.learnings import NEEDS_REFLEXIO, learnings_of
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.access_scope import TOOL_ROLES, access_scope
from reflexio_mcp.surface.client_logging import forward_logs
from reflexio_mcp.surface.completions import register_completions
from reflexio_mcp.surface.deadline import request_deadline
from reflexio_mcp.surface.learnings import TOOLS as LEARNINGS_TOOLS
from reflexio_mcp.surface.learnings_context import (
    register_learnings_prompt,
    register_learnings_resources,
)
from reflexio_mcp.surface.prompts import prompt_arguments, register_prompts
from reflexio_mcp.surface.resource_updates import ResourceUpdates
from reflexio_mcp.surface.resources import register_resources
from reflexio_mcp.surface.secret_rules import start_building, wait_for_secret_rules
from reflexio_mcp.surface.state import AppState
from reflexio_mcp.surface.tool_call_errors import tool_call_errors
from reflexio_mcp.surface.tools import build_tools
from reflexio_mcp.transports.stdio_guard import answer_unreadable
from reflexio_mcp.transports.tokens import AccessTokens, local_grant

logger = logging.getLogger("reflexio_mcp")

ENABLE_ADMIN = (
    "it reads every user's interactions, so it is off unless reflexio-mcp starts with "
    "--allow-admin (or REFLEXIO_MCP_ALLOW_ADMIN=1)"
)
READ_ONLY = "the server runs with --read-only (REFLEXIO_MCP_READ_ONLY), so nothing is written"


def build_server(
    settings: Settings,
    backend: Backend | SharedBackend | None = None,
    tokens: AccessTokens | None = None,
    counting: ServerMiddleware[Any] | None = None,
) -> MCPServer[AppState]:
    """An MCP server whose tools and resources all go to `backend` (default: from settings).

    The backend is opened when the server starts and closed when it stops, unless a
    SharedBackend already holds it open (the HTTP server does, for all its sessions). With
    Reflexio, one reachability probe runs beside the first requests and logs a warning if it
    fails. On the HTTP transports, with access tokens configured, every request must carry
    one (the SDK's bearer-token seam) and acts within that token's grant. `counting`, if
    given, sees every request first (the HTTP server counts calls under way with it).
    """
    shared = (
        backend
        if isinstance(backend, SharedBackend)
        else SharedBackend(
            backend if backend is not None else build_backend(settings), settings.user_id
        )
    )
    store = shared.backend
    session_id = f"reflexio-mcp-{uuid.uuid4().hex}"

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncGenerator[AppState]:
        # The secret scanner's rules (detect-secrets, ~10 ms) build in a thread from the first
        # tools/list on, so a first invalid argument finds them ready instead of building them
        # on the loop, and the handshake does not share the CPU with them.
        start_building()
        async with shared:
            yield AppState(
                store,
                settings.user_id,
                session_id,
                max_result_chars=settings.max_result_chars,
                deadline=settings.deadline,
                redact_secrets=not settings.keep_secrets,
                confirm_deletes=not settings.no_confirm,
            )

    http = settings.transport != "stdio"
    pinned = settings.pin_user or (http and settings.tokens_file is not None)
    admin = settings.allow_admin or (http and settings.tokens_file is not None)
    learnings = learnings_of(store)
    tools = build_tools(
        open_world=store.remote,
        allow_admin=admin,
        read_only=settings.read_only,
        pinned=pinned,
        learns=learnings is not None,
    )
    not_enabled = {} if admin else {"get_all_interactions": ENABLE_ADMIN}
    if learnings is None:
        not_enabled.update(dict.fromkeys(LEARNINGS_TOOLS, NEEDS_REFLEXIO))
    if settings.read_only:
        writing = [name for name, role in TOOL_ROLES.items() if role == "write"]
        not_enabled.update(dict.fromkeys(writing, READ_ONLY))
    auth = http and settings.authenticates
    stateless = settings.transport == "streamable-http" and settings.stateless
    updates = ResourceUpdates(settings.user_id, stateless=stateless)
    server = MCPServer[AppState](
        "reflexio",
        title="Reflexio interactions",
        version=__version__,
        instructions=_instructions(store, settings),
        website_url="https://github.com/ReflexioAI/reflexio",
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=tools,
        token_verifier=(tokens or AccessTokens(settings)) if auth else None,
        auth=_auth_settings(settings) if auth else None,
        request_state_security=_shared_state(settings),
        subscriptions=updates.bus,
        middleware=[
            *([counting] if counting else []),
            answer_unreadable,
            wait_for_secret_rules,
            access_scope(local_grant(settings), [tool.name for tool in tools]),
            tool_call_errors(tools, not_enabled=not_enabled),
            prompt_arguments,
            request_deadline(settings.deadline),
        ],
    )
    forward_logs(server, multi_user=http and settings.tokens_file is not None)
    register_resources(
        server,
        store,
        default_user_id=settings.user_id,
        updates=updates,
        max_chars=settings.max_result_chars,
    )
    register_completions(server, store, default_user_id=settings.user_id)
    register_prompts(server)
    if learnings is not None:
        register_learnings_resources(
            server, learnings, default_user_id=settings.user_id, max_chars=settings.max_result_chars
        )
        register_learnings_prompt(server)
    return server


class SharedBackend:
    """Opens the backend at the first `async with` and closes it after the last, so every
    session of one process (the SSE transport runs the server's lifespan once per connection)
    shares one backend: one HTTP client pool, one store, one outbox deliverer."""

    def __init__(self, backend: Backend, user_id: str) -> None:
        self.backend = backend
        self._user_id = user_id
        self._users = 0
        self._open: AsyncExitStack | None = None

    async def __aenter__(self) -> Backend:
        if self._users == 0:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(self.backend)
                background = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(background.cancel_scope.cancel)
                if self.backend.remote:
                    background.start_soon(_probe, self.backend, self._user_id)
                self._open = stack.pop_all()
        self._users += 1
        return self.backend

    async def __aexit__(self, *exc_info: object) -> None:
        self._users -= 1
        if self._users == 0 and self._open is not None:
            opened, self._open = self._open, None
            await opened.aclose()


def _shared_state(settings: Settings) -> RequestStateSecurity | None:
    """Replicas that share a state key accept each other's sealed questions; without one,
    the SDK seals with a key of this process alone."""
    if settings.state_key is None:
        return None
    return RequestStateSecurity(keys=[settings.state_key.get_secret_value()])


def _auth_settings(settings: Settings) -> AuthSettings:
    """Bearer tokens checked by this server itself: the SDK answers 401 with WWW-Authenticate
    and serves the protected-resource metadata naming this server."""
    return AuthSettings(
        issuer_url=AnyHttpUrl(settings.base_url),
        resource_server_url=AnyHttpUrl(settings.base_url + settings.endpoint_path),
        validate_token_resource=False,
    )


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
        f"{_whom(settings)}"
    )


def _whom(settings: Settings) -> str:
    if settings.transport != "stdio" and settings.tokens_file is not None:
        return "Every call acts for the user of the caller's access token."
    if settings.pin_user:
        return f"Every call acts for {settings.user_id!r}."
    return f"Calls that name no user_id act for {settings.user_id!r}."
