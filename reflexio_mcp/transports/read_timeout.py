"""Slow clients are cut off: a request's headers, and then its body, must each arrive within
`--read-timeout` seconds, else the client is answered 408 and disconnected.

uvicorn bounds neither (its keep-alive timeout only runs between requests, and any byte stops
it): 300 sockets sending a byte a second, unauthenticated ones included, all stayed open. This
is uvicorn's h11 protocol with one timer per connection, set while the client owes headers or
a body (h11 says which), so a response that streams for long (an SSE stream) is never cut.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

logger = logging.getLogger(__name__)


def bounded_reads(seconds: float) -> type[H11Protocol]:
    """The protocol class for uvicorn's `http` option."""
    return type("BoundedReadsH11Protocol", (BoundedReads,), {"read_timeout": seconds})


class BoundedReads(H11Protocol):
    read_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        self._timer: asyncio.TimerHandle | None = None
        self._owed: str | None = None
        super().connection_made(transport)
        self._expect("headers")

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._expect("headers")  # the next request on a kept-alive connection begins
        super().data_received(data)
        self._expect(_owed(self.conn.their_state))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have begun here, without new data arriving.
        self._expect(_owed(self.conn.their_state))

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(None)
        super().connection_lost(exc)

    def _expect(self, owed: str | None) -> None:
        """Time what the client owes now, if it is not what was already timed."""
        if owed == self._owed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owed = owed
        if owed is not None:
            self._timer = self.loop.call_later(self.read_timeout, self._too_slow)

    def _too_slow(self) -> None:
        owed, self._timer, self._owed = self._owed, None, None
        if self.transport.is_closing():
            return
        logger.info(
            "disconnected %s: its request's %s took longer than %g s (--read-timeout)",
            self.client[0] if self.client else "a client",
            owed,
            self.read_timeout,
        )
        cycle = cast("RequestResponseCycle | None", self.cycle)  # None before a first request
        answered = owed == "body" and cycle is not None and cycle.response_started
        if not answered:
            self.transport.write(_timeout_response(self.read_timeout))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() says so; its sends go nowhere
            cycle.message_event.set()
        self.transport.close()


def _owed(state: object) -> str | None:
    """What a client in this h11 state still has to send of its request."""
    if state is h11.IDLE:
        return "headers"
    return "body" if state is h11.SEND_BODY else None


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32000,
                "message": f"request timeout: the request took longer than {seconds:g} s to "
                "arrive (its headers, or its body); send it again, at once",
            },
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body
