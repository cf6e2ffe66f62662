"""A lean HTTP/1.1 client for plain-http Reflexio: kept-alive connections, nothing else.

httpx2 spent about 0.8 ms of CPU on each call to a local Reflexio (header validation, byte
checks, several cancel scopes a request); the same request over a kept-alive socket costs
0.25 ms. This client sends exactly the requests ReflexioHttpClient builds and reads answers
framed by Content-Length, chunked encoding or the end of the connection. TLS, proxies and
injected test transports stay with httpx2 (see http.py for which is used when).

Failures are raised as the three kinds ReflexioHttpClient maps to its errors: no connection
(ConnectFailed, ConnectTimedOut) and a connection that broke or spoke no HTTP (Dropped).
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

MAX_HEAD_BYTES = 64 * 1024
"""Status line and headers of one answer; past it the answer is refused as not HTTP."""
MAX_IDLE = 20
"""Kept-alive connections waiting for the next request."""
MAX_OPEN = 100
"""Connections open at once; a request past it waits for one to be free."""
READ_CHUNK = 256 * 1024
_BROKEN = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, whole: what the Reflexio client reads of it."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    """Names lower-cased; a repeated header's values joined with ', '."""
    content: bytes
    path: str

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def json(self) -> Any:
        return json.loads(self.content)


class ExchangeError(Exception):
    """A request that got no answer."""


class ConnectFailed(ExchangeError):
    """No connection: refused, no route, a host name that does not resolve (the OS error is
    the __cause__)."""


class ConnectTimedOut(ExchangeError):
    """No connection within the connect timeout."""


class Dropped(ExchangeError):
    """Connected, but the connection broke, or what came back was not HTTP, before a whole
    answer."""


class NotHttp(Dropped):
    """What came back was not an HTTP answer (the port of something else, or TLS)."""


class _Stale(Exception):
    """A kept-alive connection the server had closed before it read the request."""


class Http11Pool:
    """Connections to one host:port, reused while the server keeps them alive."""

    def __init__(self, host: str, port: int, head: bytes) -> None:
        """`head` holds the header lines sent with every request (Host, User-Agent...), each
        ending in CRLF."""
        self._host = host
        self._port = port
        self._head = head
        self._idle: list[tuple[anyio.abc.SocketStream, socket.socket]] = []
        self._open = 0
        self._freed: anyio.Event | None = None

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None,
        *,
        connect_timeout: float,
    ) -> Answer:
        """Send one request and read its whole answer. The caller bounds the whole of it in
        time; a request cancelled midway closes its connection (never reused half-read)."""
        lines = [f"{method} {target} HTTP/1.1\r\n".encode(), self._head]
        if body is not None:
            lines.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        message = b"".join(lines) + (body or b"")
        await self._take_slot()
        try:
            while self._idle:
                stream, sock = self._idle.pop()
                if _closed_by_peer(sock):
                    await _close(stream)
                    continue
                try:
                    return await self._exchange(stream, sock, message, target, reused=True)
                except _Stale:
                    continue
            stream = await self._connect(connect_timeout)
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            try:
                return await self._exchange(stream, sock, message, target, reused=False)
            except _Stale as stale:  # only a reused connection is stale; this one is new
                raise Dropped("the connection closed before an answer") from stale.__cause__
        finally:
            self._free_slot()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for stream, _ in idle:
            await _close(stream)

    async def _exchange(
        self,
        stream: anyio.abc.SocketStream,
        sock: socket.socket,
        message: bytes,
        target: str,
        *,
        reused: bool,
    ) -> Answer:
        reader = _Reader(stream)
        try:
            try:
                await stream.send(message)
                await reader.fill()
            except _BROKEN as err:
                if reused and not reader.received:
                    raise _Stale from err
                raise
            answer, keep = await _read_answer(reader, target)
        except BaseException as err:
            await _close(stream)
            if isinstance(err, _Stale):
                raise
            if isinstance(err, _BROKEN):
                raise Dropped("the connection dropped before a whole answer") from err
            raise
        if keep and not reader.pending and len(self._idle) < MAX_IDLE:
            self._idle.append((stream, sock))
        else:
            await _close(stream)
        return answer

    async def _connect(self, seconds: float) -> anyio.abc.SocketStream:
        try:
            with anyio.fail_after(seconds):
                return await anyio.connect_tcp(self._host, self._port)
        except TimeoutError:
            raise ConnectTimedOut(f"no connection within {seconds:g} s") from None
        except OSError as err:
            raise ConnectFailed(str(err)) from err

    async def _take_slot(self) -> None:
        while self._open >= MAX_OPEN:
            if self._freed is None:
                self._freed = anyio.Event()
            await self._freed.wait()
        self._open += 1

    def _free_slot(self) -> None:
        self._open -= 1
        if self._freed is not None:
            self._freed.set()
            self._freed = None


class _Reader:
    """The bytes of one connection's answer, read as the parser needs them."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream
        self.buffer = bytearray()
        self.received = False
        self.ended = False

    @property
    def pending(self) -> bool:
        """Bytes past the answer: a server that says more than it was asked is not reused."""
        return bool(self.buffer)

    async def fill(self) -> None:
        """Read once more; at the end of the connection, `ended` (or EndOfStream when
        nothing at all came)."""
        try:
            chunk = await self._stream.receive(READ_CHUNK)
        except anyio.EndOfStream:
            if not self.received:
                raise
            self.ended = True
            return
        self.received = True
        self.buffer += chunk

    async def until(self, marker: bytes, limit: int) -> bytes:
        """The bytes before `marker` (taken off the buffer with it)."""
        start = 0
        while (end := self.buffer.find(marker, start)) < 0:
            if len(self.buffer) > limit:
                raise NotHttp(f"an answer line longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            await self._more()
        taken = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return taken

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            await self._more()
        taken = bytes(self.buffer[:count])
        del self.buffer[:count]
        return taken

    async def rest(self) -> bytes:
        while not self.ended:
            await self.fill()
        taken = bytes(self.buffer)
        self.buffer.clear()
        return taken

    async def _more(self) -> None:
        await self.fill()
        if self.ended:
            raise Dropped("the connection closed inside an answer")


async def _read_answer(reader: _Reader, path: str) -> tuple[Answer, bool]:
    """The answer, and whether its connection may carry the next request."""
    while True:
        head = await reader.until(b"\r\n\r\n", MAX_HEAD_BYTES)
        version, status, reason, headers = _parse_head(head)
        if not 100 <= status < 200:
            break
    keep = version == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if status in (204, 304):
        content = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        content = await _chunked(reader)
    elif (length := headers.get("content-length")) is not None:
        if not length.isdigit():
            raise NotHttp(f"Content-Length {length[:40]!r} is not a number")
        content = await reader.exactly(int(length))
    else:
        content, keep = await reader.rest(), False
    return Answer(status, reason, headers, content, path.partition("?")[0]), keep


def _parse_head(head: bytes) -> tuple[bytes, int, str, dict[str, str]]:
    status_line, *lines = head.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise NotHttp(f"the answer began {status_line[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise NotHttp(f"a header line {line[:40]!r} has no colon")
        key = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return version, int(code), reason.decode("latin-1"), headers


async def _chunked(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.until(b"\r\n", 1024)
        try:
            size = int(size_line.partition(b";")[0].strip(), 16)
        except ValueError:
            raise NotHttp(f"a chunk size {size_line[:40]!r} is not hexadecimal") from None
        if size == 0:
            while await reader.until(b"\r\n", MAX_HEAD_BYTES):  # trailers, to the blank line
                pass
            return b"".join(parts)
        parts.append(await reader.exactly(size))
        if await reader.exactly(2) != b"\r\n":
            raise NotHttp("a chunk did not end with CRLF")


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it (or sent what
    no request asked for). Either way it cannot carry a request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


async def _close(stream: anyio.abc.SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        await stream.aclose()
