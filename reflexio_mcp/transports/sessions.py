"""A bound on the sessions each caller holds open over HTTP: 429 beyond it.

The SDK caps the stateful sessions of the whole process (10,000, each kept until the client
deletes it or it is idle 30 minutes), so one caller could hold them all and every other one
got 503. Here a caller (its access token when valid, else its address, as for the rate limit)
holds at most `per_caller` at once:
- a Streamable HTTP session from the answer that opened it until the SDK forgets it (the
  client's DELETE, the idle timeout, a crash): `alive` asks the SDK;
- an SSE session while its stream (the GET) is open.
A request that opens one is counted while it is under way, so concurrent ones cannot overshoot.
Requests of the 2026-07-28 protocol, and stateless mode, open no session and are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reflexio_mcp.transports.rate_limit import caller_of, kind_of, too_many


class SessionLimit:
    def __init__(
        self,
        app: ASGIApp,
        per_caller: int,
        *,
        path: str,
        known_token: Callable[[str], bool],
        alive: Callable[[str], bool] | None,
    ) -> None:
        """`path` is the MCP endpoint; `alive` tells whether the SDK still holds a Streamable
        HTTP session id, None for SSE (where a session lasts as long as its GET)."""
        self.app = app
        self.per_caller = per_caller
        self._path = path
        self._known_token = known_token
        self._alive = alive
        self._opening: Counter[str] = Counter()
        self._sessions: dict[str, set[str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._opens_a_session(scope):
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope, self._known_token)
        self._forget_ended()
        if self._opening[caller] + len(self._sessions.get(caller, ())) >= self.per_caller:
            await too_many(
                send,
                f"too many open sessions: at most {self.per_caller} at once per "
                f"{kind_of(caller)}; close (DELETE) the ones you no longer use, or reuse one "
                "(an idle one closes after 30 minutes)",
            )
            return

        opening = True

        async def noting_the_session(message: Message) -> None:
            nonlocal opening
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened = Headers(raw=message.get("headers", [])).get(MCP_SESSION_ID_HEADER)
                if opened is not None:
                    # Counted as opened from now on, not also as opening: the client has the
                    # answer before this request ends here, and may open another meanwhile.
                    self._sessions.setdefault(caller, set()).add(opened)
                    self._opened(caller)
                    opening = False
            await send(message)

        self._opening[caller] += 1
        try:
            await self.app(scope, receive, noting_the_session if self._alive else send)
        finally:
            if opening:
                self._opened(caller)

    def _opened(self, caller: str) -> None:
        """One of `caller`'s opening requests is no longer under way."""
        self._opening[caller] -= 1
        if not self._opening[caller]:
            del self._opening[caller]

    def _opens_a_session(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self._path.rstrip("/"):
            return False
        if self._alive is None:
            return scope["method"] == "GET"
        headers = Headers(scope=scope)
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        return (
            scope["method"] == "POST"
            and MCP_SESSION_ID_HEADER not in headers
            and (version is None or version in HANDSHAKE_PROTOCOL_VERSIONS)
        )

    def _forget_ended(self) -> None:
        """Drop the sessions the SDK no longer holds (a pass over at most its 10,000)."""
        alive = self._alive
        if alive is None:
            return
        for caller, sessions in list(self._sessions.items()):
            sessions.intersection_update([s for s in sessions if alive(s)])
            if not sessions:
                del self._sessions[caller]
