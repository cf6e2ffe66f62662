"""The lean HTTP/1.1 client against real loopback sockets: a scripted server answers each
request as a Reflexio, a proxy or a broken peer would, byte for byte."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from reflexio_mcp.backends.reflexio.http import USER_AGENT, ReflexioHttpClient
from reflexio_mcp.core.errors import BackendTimeout, BackendUnreachable
from tests.support.reflexio_server import free_port

Connection = anyio.abc.SocketStream
Script = Callable[["Peer", Connection], Awaitable[None]]


@dataclass
class Peer:
    """A loopback server: each connection it accepts is handed to `script`."""

    script: Script
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list[bytes])
    buffers: dict[int, bytearray] = field(default_factory=dict[int, bytearray])

    async def read_request(self, conn: Connection) -> tuple[bytes, bytes]:
        """The next request's head and body on `conn`; EndOfStream when the client closed."""
        buffer = self.buffers.setdefault(id(conn), bytearray())
        while b"\r\n\r\n" not in buffer:
            buffer += await conn.receive()
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        while len(rest) < length:
            rest += await conn.receive()
        buffer[:] = rest[length:]
        self.requests.append(head)
        return head, rest[:length]


def ok(body: object, *, extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(data)
        + data
    )


def target_of(head: bytes) -> str:
    return head.split(b" ")[1].decode()


async def echo(peer: Peer, conn: Connection) -> None:
    """Answers every request with its own target and body, on one kept-alive connection."""
    while True:
        head, body = await peer.read_request(conn)
        await conn.send(ok({"target": target_of(head), "body": body.decode()}))


@asynccontextmanager
async def serving(script: Script) -> AsyncGenerator[Peer]:
    peer = Peer(script)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    peer.port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(conn: Connection) -> None:
        peer.connections += 1
        async with conn:
            with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await script(peer, conn)

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        try:
            yield peer
        finally:
            group.cancel_scope.cancel()


def client_of(peer: Peer, *, path: str = "", **options: float) -> ReflexioHttpClient:
    return ReflexioHttpClient(
        f"http://127.0.0.1:{peer.port}{path}",
        api_key=SecretStr("rk-test-key-1234"),
        max_retries=0,
        retry_delay=0,
        **options,  # pyright: ignore[reportArgumentType]
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


async def test_requests_share_one_kept_alive_connection_and_carry_the_fixed_headers() -> None:
    async with serving(echo) as peer, client_of(peer, path="/prefix") as http:
        for n in range(5):
            answer, retried = await http.send(
                "POST", "/api/search_interactions", body=b'{"n": %d}' % n, params={"a": "b c"}
            )
            assert answer.json() == {
                "target": "/prefix/api/search_interactions?a=b+c",
                "body": f'{{"n": {n}}}',
            }
            assert not retried
    assert peer.connections == 1
    head = peer.requests[0].decode().split("\r\n")
    assert head[0] == "POST /prefix/api/search_interactions?a=b+c HTTP/1.1"
    assert f"Host: 127.0.0.1:{peer.port}" in head
    assert f"User-Agent: {USER_AGENT}" in head
    assert "Authorization: Bearer rk-test-key-1234" in head
    assert "Content-Type: application/json" in head


async def test_a_url_path_is_sent_escaped_as_httpx2_sends_it() -> None:
    async with serving(echo) as peer, client_of(peer, path="/re flexio%2Fv1\r\nX: y") as http:
        answer, _ = await http.send("GET", "/health")
    assert answer.json()["target"] == "/re%20flexio%2Fv1X:%20y/health"  # urlsplit drops CR, LF


async def test_a_url_password_is_sent_as_basic_auth() -> None:
    async with serving(echo) as peer:
        url = f"http://ann:pa%20ss@127.0.0.1:{peer.port}"
        async with ReflexioHttpClient(url, max_retries=0) as http:
            await http.send("GET", "/health")
    assert "Authorization: Basic YW5uOnBhIHNz" in peer.requests[0].decode()  # ann:pa ss


async def test_a_kept_alive_connection_the_server_closed_is_replaced_without_a_retry() -> None:
    async def one_answer_then_close(peer: Peer, conn: Connection) -> None:
        await peer.read_request(conn)
        await conn.send(ok({"n": peer.connections}))

    async with serving(one_answer_then_close) as peer, client_of(peer) as http:
        first, _ = await http.send("GET", "/health")
        await anyio.sleep(0.05)  # the server's close has arrived
        second, retried = await http.send("GET", "/health")
    assert (first.json(), second.json(), retried) == ({"n": 1}, {"n": 2}, False)


async def test_a_408_an_idle_connection_got_is_never_read_as_the_next_answer() -> None:
    async def times_out_idle(peer: Peer, conn: Connection) -> None:
        await peer.read_request(conn)
        await conn.send(ok({"n": peer.connections}))
        if peer.connections == 1:  # as nginx does when a kept-alive connection idles too long
            await anyio.sleep(0.02)
            await conn.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
            await anyio.sleep(1)  # and closes it a little later

    async with serving(times_out_idle) as peer, client_of(peer) as http:
        await http.send("GET", "/health")
        await anyio.sleep(0.1)
        second, _ = await http.send("GET", "/health")
    assert second.json() == {"n": 2}


async def test_a_reused_connection_closed_as_the_request_went_out_is_resent_once() -> None:
    async def reads_the_second_and_closes(peer: Peer, conn: Connection) -> None:
        await peer.read_request(conn)
        await conn.send(ok({"n": peer.connections}))
        if peer.connections == 1:
            await peer.read_request(conn)  # the race a keep-alive timeout loses: no answer

    async with serving(reads_the_second_and_closes) as peer, client_of(peer) as http:
        await http.send("GET", "/health")
        second, _ = await http.send("GET", "/health")
    assert second.json() == {"n": 2}
    assert peer.connections == 2


async def test_chunked_close_and_unframed_answers_are_read_whole() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b'\r\n3;ext=1\r\n{"a\r\n5\r\n": 1}\r\n0\r\nTrailer: x\r\n\r\n',
        ok({"b": 2}, extra=b"Connection: close\r\n"),
        b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"c": 3}',
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok({"d": 4}),
    ]

    async def scripted(peer: Peer, conn: Connection) -> None:
        while answers:
            await peer.read_request(conn)
            answer = answers.pop(0)
            await conn.send(answer)
            if b"Connection: close" in answer or answer.startswith(b"HTTP/1.0"):
                return

    async with serving(scripted) as peer, client_of(peer) as http:
        got = [(await http.send("GET", "/x"))[0].json() for _ in range(4)]
    assert got == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]
    assert peer.connections == 3  # the closing and the unframed answers ended theirs


async def test_an_answer_cut_midway_is_a_dropped_connection_not_a_short_answer() -> None:
    async def cut(peer: Peer, conn: Connection) -> None:
        await peer.read_request(conn)
        await conn.send(ok({"interactions": ["x" * 100]})[:-20])

    async with serving(cut) as peer, client_of(peer) as http:
        with pytest.raises(BackendUnreachable, match="dropped before an answer") as caught:
            await http.send("GET", "/health")
    assert "closed inside an answer" in str(caught.value)


async def test_something_that_is_not_http_is_named_so() -> None:
    async def ssh(peer: Peer, conn: Connection) -> None:
        await conn.send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async with serving(ssh) as peer, client_of(peer) as http:
        with pytest.raises(BackendUnreachable, match=r"not HTTP .*scheme and port of REFLEXIO_URL"):
            await http.send("GET", "/health")


async def test_a_server_that_never_answers_times_out_once_without_a_retry() -> None:
    async def silent(peer: Peer, conn: Connection) -> None:
        await peer.read_request(conn)
        await anyio.sleep_forever()

    async with serving(silent) as peer:
        http = ReflexioHttpClient(
            f"http://127.0.0.1:{peer.port}", timeout=0.3, max_retries=3, retry_delay=0
        )
        async with http:
            with pytest.raises(BackendTimeout, match=r"did not answer /health within 0\.3 s"):
                await http.send("GET", "/health")
    assert peer.connections == 1


async def test_a_trickling_answer_is_bounded_as_a_whole() -> None:
    async def trickle(peer: Peer, conn: Connection) -> None:
        await peer.read_request(conn)
        for byte in ok({"slow": True}):
            await conn.send(bytes([byte]))
            await anyio.sleep(0.02)

    async with serving(trickle) as peer:
        url = f"http://127.0.0.1:{peer.port}"
        async with ReflexioHttpClient(url, timeout=0.3, connect_timeout=0.2) as http:
            with pytest.raises(BackendTimeout):
                await http.send("GET", "/health")


async def test_a_cancelled_request_never_hands_its_answer_to_the_next() -> None:
    async def slow_first(peer: Peer, conn: Connection) -> None:
        while True:
            head, _ = await peer.read_request(conn)
            if target_of(head) == "/slow":
                await anyio.sleep(0.3)
            await conn.send(ok({"target": target_of(head)}))

    async with serving(slow_first) as peer, client_of(peer) as http:
        with anyio.move_on_after(0.1):
            await http.send("GET", "/slow")
        answer, _ = await http.send("GET", "/fast")
    assert answer.json() == {"target": "/fast"}


async def test_refused_says_how_to_start_reflexio() -> None:
    async with ReflexioHttpClient(f"http://127.0.0.1:{free_port()}", max_retries=0) as http:
        with pytest.raises(BackendUnreachable, match=r"connection refused.*reflexio services"):
            await http.send("GET", "/health")


async def test_concurrent_requests_each_get_their_own_answer() -> None:
    async with serving(echo) as peer, client_of(peer) as http:
        got: dict[int, object] = {}

        async def one(n: int) -> None:
            answer, _ = await http.send("POST", f"/n/{n}", body=b"%d" % n)
            got[n] = answer.json()

        async with anyio.create_task_group() as group:
            for n in range(40):
                group.start_soon(one, n)
    assert got == {n: {"target": f"/n/{n}", "body": str(n)} for n in range(40)}
    assert peer.connections <= 40


async def test_with_a_proxy_in_the_environment_httpx2_sends_through_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serving(echo) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        async with ReflexioHttpClient("http://127.0.0.9:8061", max_retries=0) as http:
            answer, _ = await http.send("GET", "/health")
    assert answer.json()["target"] == "http://127.0.0.9:8061/health"  # a proxy's absolute form


JSON_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def _framed(body: bytes, chunks: list[int] | None) -> bytes:
    if chunks is None:
        return JSON_OK + b"Content-Length: %d\r\n\r\n" % len(body) + body
    framed, rest = bytearray(JSON_OK + b"Transfer-Encoding: chunked\r\n\r\n"), body
    for size in chunks:
        piece, rest = rest[:size], rest[size:]
        if piece:
            framed += b"%x\r\n" % len(piece) + piece + b"\r\n"
    if rest:
        framed += b"%x\r\n" % len(rest) + rest + b"\r\n"
    return bytes(framed + b"0\r\n\r\n")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    chunks=st.none() | st.lists(st.integers(1, 700), max_size=6),
    segment=st.integers(1, 600),
)
def test_any_framing_cut_into_any_segments_reads_back_the_bodies_sent(
    bodies: list[bytes], chunks: list[int] | None, segment: int
) -> None:
    async def main() -> list[bytes]:
        async def segmented(peer: Peer, conn: Connection) -> None:
            for body in bodies:
                await peer.read_request(conn)
                framed = _framed(body, chunks)
                for start in range(0, len(framed), segment):
                    await conn.send(framed[start : start + segment])

        async with serving(segmented) as peer, client_of(peer) as http:
            got: list[bytes] = []
            for _ in bodies:
                answer, _ = await http.send("GET", "/x")
                got.append(answer.content)
            assert peer.connections == 1
            return got

    got = anyio.run(main)
    assert got == bodies
