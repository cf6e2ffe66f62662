"""Serve MCP over Streamable HTTP or SSE: the SDK's own ASGI apps, behind our guards.

Layers, outermost first:
- Drain: /healthz, and the graceful stop (http_drain);
- RateLimit: a request budget per access token (http_rate_limit);
- a Host or Origin whose port is not a number answers 421 / 403 (the SDK's `host:*` patterns
  take any text after the colon);
- SessionLimit: the sessions one access token may hold open (http_sessions);
- the SDK's app: bearer-token check (401 + WWW-Authenticate, protected-resource metadata),
  body limit (413), Host (421) and Origin (403) checks, then the MCP session or request.

uvicorn reads requests through http_read_timeout (slow headers or bodies: 408).

One backend serves every session of the process; it is opened before the first request and
closed after the last.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.context import ServerMiddleware
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from reflexio_mcp.core import loopback
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.state import AppState
from reflexio_mcp.transports.drain import Drain, DrainingServer
from reflexio_mcp.transports.rate_limit import RateLimit
from reflexio_mcp.transports.read_timeout import bounded_reads
from reflexio_mcp.transports.sessions import SessionLimit
from reflexio_mcp.transports.tokens import AccessTokens

logger = logging.getLogger(__name__)

_AUTHORITY = re.compile(r"(\[[^\]]*\]|[^:]*)(:\d{1,5})?")
"""A host, then a port of digits if any."""
GRACE_SECONDS = 1.0
"""After the calls are drained, notification streams (GET) get this long before they are cut."""


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection, always on: Host must name this server (loopback, --host, the
    public URL, or --allowed-hosts), and a browser's Origin must be loopback, the public URL's,
    or one of --allowed-origins."""
    hosts = [*loopback.HOST_PATTERNS, *settings.allowed_hosts]
    origins = [*loopback.ORIGIN_PATTERNS, *settings.allowed_origins]
    if settings.host not in ("0.0.0.0", "::"):
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        hosts += [f"{host}:*"]
    if settings.public_url:
        public = urlsplit(settings.public_url)
        hosts += [public.netloc, f"{public.hostname}:*"]
        origins += [f"{public.scheme}://{public.netloc}"]
    # `name:*` means any port, so also none (port 80: clients leave it out).
    hosts += [host[:-2] for host in hosts if host.endswith(":*")]
    origins += [origin[:-2] for origin in origins if origin.endswith(":*")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def build_http_app(
    server: MCPServer[AppState], settings: Settings, tokens: AccessTokens | None, drain: Drain
) -> ASGIApp:
    """The ASGI app for the settings' transport (`server` built with `tokens` and counting its
    calls in `drain`)."""
    security = transport_security(settings)
    max_body = int(settings.max_body_mb * 2**20)
    if settings.transport == "sse":
        app: ASGIApp = server.sse_app(
            sse_path=settings.endpoint_path,
            max_request_body_size=max_body,
            transport_security=security,
            host=settings.host,
        )
    else:
        app = server.streamable_http_app(
            streamable_http_path=settings.endpoint_path,
            stateless_http=settings.stateless,
            max_request_body_size=max_body,
            transport_security=security,
            host=settings.host,
        )

    def known_token(token: str) -> bool:
        return tokens is not None and tokens.match(token) is not None

    if settings.transport == "sse" or not settings.stateless:
        app = SessionLimit(
            app,
            settings.max_sessions,
            path=settings.endpoint_path,
            known_token=known_token,
            alive=None if settings.transport == "sse" else _holds(server),
        )
    limited = RateLimit(numeric_ports(app), settings.rate_limit, known_token=known_token)
    return drain.around(limited)


def _holds(server: MCPServer[AppState]) -> Callable[[str], bool]:
    """Whether the SDK still holds a Streamable HTTP session (it offers no public way to ask)."""
    sessions = server.session_manager._server_instances  # pyright: ignore[reportPrivateUsage]
    return sessions.__contains__


def numeric_ports(app: ASGIApp) -> ASGIApp:
    """`app` behind a check that the Host's port, and the Origin's, is a number if given."""

    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            origin = headers.get("origin", "")
            if not _AUTHORITY.fullmatch(headers.get("host", "")):
                await PlainTextResponse("Invalid Host header", 421)(scope, receive, send)
                return
            if "://" in origin and not _AUTHORITY.fullmatch(origin.split("://", 1)[1]):
                await PlainTextResponse("Invalid Origin header", 403)(scope, receive, send)
                return
        await app(scope, receive, send)

    return checked


ServerFactory = Callable[[AccessTokens | None, ServerMiddleware[Any]], MCPServer[AppState]]
"""Builds the MCP server every session shares, given the token verifier and the middleware
that counts calls under way (for the drain)."""


def serve_http(
    settings: Settings, shared: AbstractAsyncContextManager[object], build: ServerFactory
) -> None:
    """Serve until SIGTERM/SIGINT, then drain the calls under way and exit. `shared` holds the
    backend open while the server runs."""
    anyio.run(_serve, settings, shared, build)


async def _serve(
    settings: Settings, shared: AbstractAsyncContextManager[object], build: ServerFactory
) -> None:
    tokens = AccessTokens(settings) if settings.authenticates else None
    drain = Drain()
    server = build(tokens, drain.count_calls)
    app = build_http_app(server, settings, tokens, drain)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our handler: stderr, our format
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=int(GRACE_SECONDS),
        server_header=False,
        http=bounded_reads(settings.read_timeout),
    )
    async with shared:
        # A call takes at most the deadline, so that is as long as draining needs.
        server_process = DrainingServer(config, drain, settings.deadline)
        try:
            await server_process.serve()
        except SystemExit:  # uvicorn's answer to a failed bind, after logging the OS error
            if server_process.started:
                raise
            logger.error(  # noqa: TRY400  the OS error is logged just before
                "cannot listen on %s:%d: another server may hold the port; choose another "
                "with --port (REFLEXIO_MCP_PORT)",
                settings.host,
                settings.port,
            )
            raise SystemExit(1) from None
