"""Graceful stop for the HTTP transports: after SIGTERM, calls under way finish, new ones are
turned away (503, so a load balancer retries them elsewhere), then the server exits.

`Drain` is the ASGI side (it counts requests under way and answers /healthz); `DrainingServer`
is uvicorn's server taught to wait for it.
"""

from __future__ import annotations

import logging
import time
from types import FrameType
from typing import Any

import uvicorn
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)


class Drain:
    """Counts what is under way, at two levels: HTTP requests other than GET (a GET holds a
    notification stream open for as long as the client likes), and MCP requests (on SSE a
    call's POST is answered 202 at once and its result goes out on the GET stream later)."""

    def __init__(self) -> None:
        self.requests = 0
        self.calls = 0
        self.draining = False

    @property
    def under_way(self) -> int:
        """Calls not finished (a Streamable HTTP call counts at both levels at once)."""
        return max(self.requests, self.calls)

    def around(self, app: ASGIApp) -> ASGIApp:
        """`app` behind /healthz, refusing new requests while draining."""

        async def drained(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            if scope["path"] == "/healthz":
                await _answer(send, 503 if self.draining else 200, self.draining)
                return
            if self.draining:
                await _answer(send, 503, True)
                return
            counted = scope["method"] != "GET"
            self.requests += counted
            try:
                await app(scope, receive, send)
            finally:
                self.requests -= counted

        return drained

    async def count_calls(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """A ServerMiddleware: every MCP request counts until its result is ready."""
        self.calls += 1
        try:
            return await call_next(ctx)
        finally:
            self.calls -= 1


async def _answer(send: Send, status: int, draining: bool) -> None:
    body = b'{"status": "draining"}' if draining else b'{"status": "ok"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if draining:
        headers += [(b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """The first SIGTERM/SIGINT starts draining; the server exits once no call is under way
    (or `seconds` have passed). A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, drain: Drain, seconds: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.seconds = seconds
        self._until = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining:
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        self.drain.draining = True
        self._until = time.monotonic() + self.seconds
        logger.info(
            "stopping: %d calls under way get up to %g s to finish",
            self.drain.under_way,
            self.seconds,
        )

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining and not self.should_exit:
            if self.drain.under_way == 0:
                self.should_exit = True
            elif time.monotonic() > self._until:
                logger.warning("stopping with %d calls unfinished", self.drain.under_way)
                self.should_exit = True
        return await super().on_tick(counter)
