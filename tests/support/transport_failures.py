"""Transports that fail as httpx2's do, for the Reflexio client's error paths (a real server
cannot refuse or reset a connection on demand)."""

from __future__ import annotations

from collections.abc import Callable

import httpx2

Handler = Callable[[httpx2.Request], httpx2.Response]


def failing_with(
    cause: BaseException, kind: type[httpx2.TransportError] = httpx2.ConnectError
) -> Handler:
    """A transport failing as httpx2 does: its error wraps the OS-level cause."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise kind(str(cause), request=request) from cause

    return handler
