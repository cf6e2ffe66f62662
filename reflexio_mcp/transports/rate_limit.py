"""A per-caller request budget in front of the MCP endpoint: 429 with Retry-After beyond it.

A caller is its access token when the token is valid, else its address: wrong tokens cannot
each buy a fresh budget. Budgets are token buckets (a minute's worth at once at most).
`caller_of` and `too_many` serve the session bound too (http_sessions).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from reflexio_mcp.core.pacing import Pacer

MAX_CALLERS = 10_000
"""Budgets kept at most; the least recently seen caller's is forgotten first."""


class RateLimit:
    def __init__(
        self, app: ASGIApp, per_minute: float, *, known_token: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.per_minute = per_minute
        self._known_token = known_token
        self._budgets: OrderedDict[str, Pacer] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.per_minute or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope, self._known_token)
        budget = self._budget(caller)
        if budget.take():
            await self.app(scope, receive, send)
            return
        wait = max(1, math.ceil(budget.wait_seconds()))
        await too_many(
            send,
            f"too many requests: at most {self.per_minute:g} a minute per {kind_of(caller)}; "
            f"retry in {wait} s",
            retry_after=wait,
        )

    def _budget(self, caller: str) -> Pacer:
        budget = self._budgets.pop(caller, None) or Pacer(self.per_minute)
        self._budgets[caller] = budget
        if len(self._budgets) > MAX_CALLERS:
            self._budgets.popitem(last=False)
        return budget


async def too_many(send: Send, message: str, *, retry_after: int | None = None) -> None:
    """A 429 whose body is a JSON-RPC error (no id) saying `message`."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def kind_of(caller: str) -> str:
    """What a `caller_of` names, in words."""
    return "access token" if caller.startswith("token:") else "client address"


def caller_of(scope: Scope, known_token: Callable[[str], bool]) -> str:
    """Who sent a request: its access token (a digest) when valid, else its address."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and known_token(token):
                return "token:" + hashlib.sha256(token.encode("latin-1")).hexdigest()
    client = scope.get("client")
    return f"address:{client[0] if client else '?'}"
