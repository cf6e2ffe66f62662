"""The HTTP transports' guards, driven through the real `reflexio-mcp` process with raw requests.

Each guard is shown refusing what it must (exact status, the key words of its message) and
letting through what it must not refuse: Host (421) and Origin (403) checks, bearer tokens
(401 + WWW-Authenticate, protected-resource metadata), the body limit (413), the per-caller rate
limit (429 + Retry-After), /healthz, the refusals at start (a non-loopback address without a
token, a bad tokens file), and the graceful stop on SIGTERM.

Every process listens on 127.0.0.1 only and is stopped by its own pid. The start-up refusals
never get as far as binding; if one did, it is seen listening and killed at once.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from reflexio_mcp import __version__
from tests.support.loopback_http import serving
from tests.support.mcp_http import (
    INITIALIZE,
    MCP_HEADERS,
    HttpBridge,
    HttpTransport,
    bridge_command,
    call,
    http_bridge,
    http_client,
)
from tests.support.reflexio_server import free_port

TOKEN = "tok-" + "s3cr3t-" * 4
"""The access token of the bridges configured with one (>= 16 characters)."""
CANARY_USER = "canary-user-7f3a"
"""The guarded bridge's default user: /healthz must never show it."""
EMBEDDED = {"REFLEXIO_MCP_BACKEND": "embedded"}
REFUSAL_SECONDS = 30.0
SLOW_SEARCH_SECONDS = 2.0


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def port_of(bridge: HttpBridge) -> int:
    return int(bridge.base_url.rsplit(":", 1)[1])


def initialize(
    raw: httpx2.Client, bridge: HttpBridge, token: str | None = TOKEN, **headers: str
) -> httpx2.Response:
    """POST an MCP initialize request; `headers` override (host, origin, ...)."""
    sent = {**MCP_HEADERS, **(bearer(token) if token else {}), **headers}
    return raw.post(bridge.endpoint, json=INITIALIZE, headers=sent)


def assert_initialized(response: httpx2.Response) -> None:
    """A 200 whose (SSE or JSON) body is the initialize result of this server."""
    assert response.status_code == 200, (response.status_code, response.text)
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        assert len(data) == 1, response.text
        message: Any = json.loads(data[0])
    else:
        message = response.json()
    assert message["id"] == 1
    assert message["result"]["serverInfo"]["name"] == "reflexio"
    assert message["result"]["protocolVersion"]


@pytest.fixture(scope="module")
def raw() -> Iterator[httpx2.Client]:
    """One client for every raw request (a new client costs ~0.1 s a request)."""
    with httpx2.Client(timeout=10) as client:
        yield client


@dataclass(frozen=True)
class Bridges:
    guarded: HttpBridge
    """One access token, a 0.01 MiB body limit, no extra hosts or origins."""
    allowing: HttpBridge
    """One access token, --allowed-hosts evil.example:8000, --allowed-origins http://evil.example."""
    per_token: HttpBridge
    """Two tokens (alice, bob) in a tokens file, --rate-limit 5."""
    per_address: HttpBridge
    """No token, --rate-limit 5."""


ALICE = "alice-" + "a" * 20
BOB = "bob-" + "b" * 20


@contextmanager
def together(
    starting: Sequence[AbstractContextManager[HttpBridge, Any]],
) -> Generator[list[HttpBridge]]:
    """Enter the bridges concurrently and stop them concurrently (start-up and exit are each
    ~1-3 s of imports and teardown). A bridge that fails to start stops itself; the others
    that started are stopped before its error is raised."""
    with ThreadPoolExecutor(len(starting)) as pool:
        futures = [pool.submit(context.__enter__) for context in starting]
    started: list[tuple[AbstractContextManager[HttpBridge, Any], HttpBridge]] = []
    failure: Exception | None = None
    for context, future in zip(starting, futures, strict=True):
        try:
            started.append((context, future.result()))
        except Exception as err:  # noqa: BLE001  raised below, once the others are stopped
            failure = failure or err
    try:
        if failure is not None:
            raise failure
        yield [bridge for _, bridge in started]
    finally:
        with ThreadPoolExecutor(max(len(started), 1)) as pool:
            stops = [pool.submit(context.__exit__, None, None, None) for context, _ in started]
        for stop in stops:
            stop.result()


@pytest.fixture(scope="module")
def bridges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridges]:
    root = tmp_path_factory.mktemp("bridges")
    tokens = root / "tokens.json"
    entries = [{"token": ALICE, "user_id": "alice"}, {"token": BOB, "user_id": "bob"}]
    tokens.write_text(json.dumps({"tokens": entries}))
    tokens.chmod(0o600)
    one_token = {**EMBEDDED, "REFLEXIO_MCP_ACCESS_TOKEN": TOKEN}
    allowances = [
        "--allowed-hosts",
        "evil.example:8000",
        "--allowed-origins",
        "http://evil.example",
    ]
    starting = [
        http_bridge(
            root / "guarded",
            "--max-body-mb",
            "0.01",
            env={**one_token, "REFLEXIO_USER_ID": CANARY_USER},
        ),
        http_bridge(root / "allowing", *allowances, env=one_token),
        http_bridge(
            root / "per-token", "--rate-limit", "5", "--tokens-file", str(tokens), env=EMBEDDED
        ),
        http_bridge(root / "per-address", "--rate-limit", "5", env=EMBEDDED),
    ]
    with together(starting) as started:
        yield Bridges(*started)


@pytest.fixture
def guarded(bridges: Bridges) -> HttpBridge:
    return bridges.guarded


# 1. Host header (DNS rebinding) ------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:8000",
        "evil.example",
        "127.0.0.1.evil.example:8000",
        "localhost.evil.example:8000",
    ],
)
def test_a_foreign_host_header_is_421_even_with_a_valid_token(
    raw: httpx2.Client, guarded: HttpBridge, host: str
) -> None:
    response = initialize(raw, guarded, host=host)
    assert response.status_code == 421, response.text
    assert response.text == "Invalid Host header"
    assert "result" not in response.text


def test_loopback_host_headers_are_accepted(raw: httpx2.Client, guarded: HttpBridge) -> None:
    port = port_of(guarded)
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]:
        assert_initialized(initialize(raw, guarded, host=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_a_loopback_host_without_a_port_is_accepted(
    raw: httpx2.Client, guarded: HttpBridge, host: str
) -> None:
    """What a client sends for port 80 (--port 80 behind nothing)."""
    assert_initialized(initialize(raw, guarded, host=host))
    assert_initialized(initialize(raw, guarded, host=host, origin=f"http://{host}"))


@pytest.mark.parametrize(
    "host", ["127.0.0.1:evil", "localhost:80x", "[::1]:x", "127.0.0.1:", "127.0.0.1:123456"]
)
def test_a_host_whose_port_is_not_a_number_is_421(
    raw: httpx2.Client, guarded: HttpBridge, host: str
) -> None:
    response = initialize(raw, guarded, host=host)
    assert response.status_code == 421, response.text
    assert response.text == "Invalid Host header"
    origin = initialize(raw, guarded, origin=f"http://{host}")
    assert origin.status_code == 403, origin.text
    assert origin.text == "Invalid Origin header"


def test_allowed_hosts_and_origins_are_accepted_and_only_those(
    raw: httpx2.Client, bridges: Bridges
) -> None:
    bridge = bridges.allowing
    assert_initialized(initialize(raw, bridge, host="evil.example:8000"))
    assert_initialized(initialize(raw, bridge, origin="http://evil.example"))
    assert_initialized(
        initialize(raw, bridge, host="evil.example:8000", origin="http://evil.example")
    )
    # Loopback stays accepted; anything else stays refused.
    assert_initialized(initialize(raw, bridge, origin=f"http://127.0.0.1:{port_of(bridge)}"))
    assert initialize(raw, bridge, host="evil.example:9000").status_code == 421
    assert initialize(raw, bridge, host="other.example:8000").status_code == 421
    assert initialize(raw, bridge, origin="http://evil.example:8080").status_code == 403
    assert initialize(raw, bridge, origin="https://evil.example").status_code == 403


# 2. Origin header -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://evil.example:8443",
        "http://127.0.0.1.evil.example:80",
        "null",
    ],
)
def test_a_foreign_origin_is_403_even_with_a_valid_token(
    raw: httpx2.Client, guarded: HttpBridge, origin: str
) -> None:
    response = initialize(raw, guarded, origin=origin)
    assert response.status_code == 403, response.text
    assert response.text == "Invalid Origin header"


def test_loopback_origins_are_accepted(raw: httpx2.Client, guarded: HttpBridge) -> None:
    for origin in [
        f"http://127.0.0.1:{port_of(guarded)}",
        "http://localhost:3000",
        "http://[::1]:8080",
    ]:
        assert_initialized(initialize(raw, guarded, origin=origin))


# 3. Bearer tokens -------------------------------------------------------------------------


def test_no_token_is_401_with_www_authenticate_naming_the_resource_metadata(
    raw: httpx2.Client,
    guarded: HttpBridge,
) -> None:
    response = initialize(raw, guarded, token=None)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    metadata_url = f"{guarded.base_url}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in challenge
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer " + "x" * len(TOKEN),
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer",
    ],
    ids=["longer", "shorter", "other", "basic", "no-scheme", "empty"],
)
def test_a_wrong_token_is_401(raw: httpx2.Client, guarded: HttpBridge, authorization: str) -> None:
    response = initialize(raw, guarded, token=None, authorization=authorization)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert TOKEN not in response.text


def test_the_right_token_is_200(raw: httpx2.Client, guarded: HttpBridge) -> None:
    assert_initialized(initialize(raw, guarded))


def test_the_protected_resource_metadata_names_the_endpoint(
    raw: httpx2.Client, guarded: HttpBridge
) -> None:
    response = raw.get(f"{guarded.base_url}/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    metadata = response.json()
    assert metadata["resource"] == guarded.endpoint
    assert metadata["bearer_methods_supported"] == ["header"]
    assert TOKEN not in response.text


# 4. Body limit ----------------------------------------------------------------------------


def _padded_initialize(size: int) -> bytes:
    document = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * size}}
    return json.dumps(document).encode()


def test_a_body_over_max_body_mb_is_413(raw: httpx2.Client, guarded: HttpBridge) -> None:
    body = _padded_initialize(20_000)  # --max-body-mb 0.01 is 10,485 bytes
    headers = {**MCP_HEADERS, **bearer(TOKEN)}
    response = raw.post(guarded.endpoint, content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert response.text == "Request body too large"


def test_a_chunked_body_over_max_body_mb_is_413(raw: httpx2.Client, guarded: HttpBridge) -> None:
    """No Content-Length to trust: the limit counts the bytes as they arrive."""
    body = _padded_initialize(20_000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    headers = {**MCP_HEADERS, **bearer(TOKEN)}
    response = raw.post(guarded.endpoint, content=chunks(), headers=headers)
    assert response.status_code == 413, response.text


def test_an_oversized_body_without_a_token_is_401_not_read(
    raw: httpx2.Client, guarded: HttpBridge
) -> None:
    body = _padded_initialize(20_000)
    response = raw.post(guarded.endpoint, content=body, headers=MCP_HEADERS)
    assert response.status_code == 401, response.text


# 5. Rate limit ----------------------------------------------------------------------------


def assert_rate_limited(response: httpx2.Response, per_minute: int) -> None:
    assert response.status_code == 429, response.text
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 60 // per_minute
    error = response.json()["error"]
    assert error["code"] == -32000
    assert error["message"].startswith(f"too many requests: at most {per_minute} a minute")
    assert f"retry in {retry_after} s" in error["message"]


def test_the_rate_limit_is_per_token_and_wrong_tokens_share_their_address(
    raw: httpx2.Client, bridges: Bridges
) -> None:
    bridge = bridges.per_token
    for _ in range(5):
        assert_initialized(initialize(raw, bridge, token=ALICE))
    assert_rate_limited(initialize(raw, bridge, token=ALICE), 5)
    # Another token has a budget of its own.
    for _ in range(5):
        assert_initialized(initialize(raw, bridge, token=BOB))
    assert_rate_limited(initialize(raw, bridge, token=BOB), 5)
    # Wrong tokens buy no fresh budget: they all count against the address.
    for number in range(5):
        assert initialize(raw, bridge, token=f"wrong-token-{number:010d}").status_code == 401
    assert_rate_limited(initialize(raw, bridge, token="wrong-token-9999999999"), 5)
    for _ in range(20):
        health = raw.get(f"{bridge.base_url}/healthz")
        assert health.status_code == 200, health.text


def test_without_tokens_the_rate_limit_is_per_address_and_healthz_is_never_limited(
    raw: httpx2.Client, bridges: Bridges
) -> None:
    bridge = bridges.per_address
    for _ in range(30):  # /healthz takes nothing from the budget...
        assert raw.get(f"{bridge.base_url}/healthz").status_code == 200
    for _ in range(5):
        assert_initialized(initialize(raw, bridge, token=None))
    assert_rate_limited(initialize(raw, bridge, token=None), 5)
    for _ in range(10):  # ...and is answered when the budget is spent
        assert raw.get(f"{bridge.base_url}/healthz").status_code == 200


# 5b. Sessions per caller -------------------------------------------------------------------


def assert_too_many_sessions(response: httpx2.Response, limit: int, per: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == -32000
    assert error["message"].startswith(
        f"too many open sessions: at most {limit} at once per {per}; "
    ), error["message"]
    assert "close (DELETE) the ones you no longer use, or reuse one" in error["message"]
    assert "mcp-session-id" not in response.headers


def session_id(response: httpx2.Response) -> str:
    assert_initialized(response)
    return response.headers["mcp-session-id"]


async def test_sessions_are_bounded_per_token_and_a_closed_one_frees_its_slot(
    raw: httpx2.Client, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    entries = [
        {"token": ALICE, "user_id": "alice", "role": "read"},
        {"token": BOB, "user_id": "bob"},
    ]
    tokens.write_text(json.dumps({"tokens": entries}))
    tokens.chmod(0o600)
    args = ["--max-sessions", "3", "--rate-limit", "0", "--tokens-file", str(tokens)]
    with http_bridge(tmp_path / "bridge", *args, env=EMBEDDED) as bridge:
        alices = [session_id(initialize(raw, bridge, token=ALICE)) for _ in range(3)]
        for _ in range(3):
            assert_too_many_sessions(initialize(raw, bridge, token=ALICE), 3, "access token")
        # Another token still opens sessions, through a real 2025-era client too.
        bobs = [session_id(initialize(raw, bridge, token=BOB)) for _ in range(2)]
        async with http_client(bridge.endpoint, token=BOB, mode="legacy") as mcp:
            assert (await mcp.list_tools()).tools
            assert_too_many_sessions(initialize(raw, bridge, token=BOB), 3, "access token")
        # The client closed its session on leaving: its slot is free again.
        bobs.append(session_id(initialize(raw, bridge, token=BOB)))
        assert len(set(alices + bobs)) == 6
        closed = raw.delete(bridge.endpoint, headers={**bearer(ALICE), "mcp-session-id": alices[0]})
        assert closed.status_code == 200, closed.text
        alices[0] = session_id(initialize(raw, bridge, token=ALICE))
        assert_too_many_sessions(initialize(raw, bridge, token=ALICE), 3, "access token")
        # Sessions still open still serve.
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        answer = raw.post(
            bridge.endpoint,
            json=ping,
            headers={**MCP_HEADERS, **bearer(ALICE), "mcp-session-id": alices[1]},
        )
        assert answer.status_code == 200, answer.text


async def test_sse_streams_are_bounded_per_address_without_tokens(tmp_path: Path) -> None:
    with http_bridge(
        tmp_path / "bridge", "--max-sessions", "2", transport="sse", env=EMBEDDED
    ) as bridge:
        async with httpx2.AsyncClient(timeout=10) as client:
            async with (
                client.stream("GET", bridge.endpoint) as first,
                client.stream("GET", bridge.endpoint) as second,
            ):
                assert first.status_code == second.status_code == 200
                refused = await client.get(bridge.endpoint)
                assert_too_many_sessions(refused, 2, "client address")
            async with http_client(bridge.endpoint, transport="sse") as mcp:
                assert (await mcp.list_tools()).tools


# 5c. Slow clients --------------------------------------------------------------------------

TRICKLERS = 10
"""Sockets of each kind: enough to show none is spared, few enough for a shared machine."""
TRICKLE_SECONDS = 0.2
GIVE_UP_SECONDS = 30.0
"""Far past the 1 s bound under test: a socket still open then is never closed."""


def _slow_socket(port: int, kind: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n".encode()
    if kind == "headers":
        sock.sendall(head)
    elif kind == "pipelined":  # a request answered at once, then one whose body never comes
        sock.sendall(
            f"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()
            + head
            + f"authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n".encode()
            + b"accept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n"
        )
    elif kind in ("body", "body-anonymous"):
        auth = f"authorization: Bearer {TOKEN}\r\n".encode() if kind == "body" else b""
        sock.sendall(
            head + auth + b"content-type: application/json\r\n"
            b"accept: application/json, text/event-stream\r\ncontent-length: 100000\r\n\r\n{"
        )
    sock.setblocking(False)
    return sock


def test_slow_clients_are_answered_408_and_disconnected(raw: httpx2.Client, tmp_path: Path) -> None:
    """Silent sockets, headers a byte at a time, bodies a byte at a time (with and without a
    token): each is cut off once its headers, or its body, take longer than --read-timeout."""
    kinds = ["silent", "headers", "body", "body-anonymous", "pipelined"]
    env = {**EMBEDDED, "REFLEXIO_MCP_ACCESS_TOKEN": TOKEN}
    with http_bridge(tmp_path / "bridge", "--read-timeout", "1", env=env) as bridge:
        port = port_of(bridge)
        sockets = {(kind, n): _slow_socket(port, kind) for kind in kinds for n in range(TRICKLERS)}
        received = dict.fromkeys(sockets, b"")
        open_ = set(sockets)
        give_up = time.monotonic() + GIVE_UP_SECONDS
        try:
            while open_ and time.monotonic() < give_up:
                for key in list(open_):
                    sock = sockets[key]
                    try:
                        while chunk := sock.recv(4096):
                            received[key] += chunk
                        open_.discard(key)  # b"": closed by the server
                        continue
                    except BlockingIOError:
                        pass
                    except ConnectionError:
                        open_.discard(key)
                        continue
                    if key[0] not in ("silent", "pipelined"):
                        with suppress(BlockingIOError, ConnectionError):
                            sock.send(b"x")
                time.sleep(TRICKLE_SECONDS)
        finally:
            for sock in sockets.values():
                sock.close()
        assert not open_, f"{len(open_)} of {len(sockets)} slow sockets still open: {sorted(open_)}"
        for (kind, _), answer in received.items():
            if kind == "pipelined":
                assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
                answer = answer[answer.index(b"HTTP/1.1 ", 1) :]
            expected = b"HTTP/1.1 401 " if kind == "body-anonymous" else b"HTTP/1.1 408 "
            assert answer.startswith(expected), (kind, answer[:200])
            if expected.endswith(b"408 "):
                assert b"the request took longer than 1 s to arrive" in answer, answer
        assert_initialized(initialize(raw, bridge))  # still serving


# 6, 7. Refusals at start ------------------------------------------------------------------


@dataclass(frozen=True)
class Exited:
    code: int
    stdout: str
    stderr: str


def _listening(port: int) -> bool:
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family) as sock:
                sock.settimeout(0.2)
                sock.connect((address, port))
        except OSError:
            continue
        return True
    return False


def run_refused(workdir: Path, port: int, *args: str, env: dict[str, str] | None = None) -> Exited:
    """Run `reflexio-mcp <args>`, which must exit by itself; if it is ever seen listening on
    `port`, it is killed at once (by its own process group) and the test fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "xdg"),
        "REFLEXIO_MCP_DATA_DIR": str(workdir / "data"),
        **EMBEDDED,
        **(env or {}),
    }
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*bridge_command(), *args], env=environment, stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + REFUSAL_SECONDS
        while process.poll() is None:
            if _listening(port):
                raise AssertionError(f"reflexio-mcp {args} started listening instead of refusing")
            if time.monotonic() > deadline:
                raise AssertionError(f"reflexio-mcp {args} neither refused nor exited in 30 s")
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return Exited(process.returncode, out.read_text(), err.read_text())


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        (["--host", "::"], {}),
        ([], {"REFLEXIO_MCP_HOST": "0.0.0.0"}),
    ],
    ids=["flag-ipv4", "flag-ipv6", "env-ipv4"],
)
def test_a_non_loopback_bind_without_a_token_refuses_to_start(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    port = free_port()
    exited = run_refused(
        tmp_path, port, "--transport", "streamable-http", "--port", str(port), *args, env=env
    )
    assert exited.code == 2, exited
    assert exited.stdout == ""
    lines = exited.stderr.splitlines()
    assert len(lines) == 1, exited.stderr
    assert lines[0].startswith("reflexio-mcp: invalid configuration: refusing to listen on ")
    assert "without an access token" in lines[0]
    assert "REFLEXIO_MCP_ACCESS_TOKEN" in lines[0]
    assert "--tokens-file" in lines[0]


def test_a_too_short_access_token_refuses_to_start_and_is_not_shown(tmp_path: Path) -> None:
    port = free_port()
    short = "shortsecret42"  # 13 characters
    exited = run_refused(
        tmp_path,
        port,
        *["--transport", "streamable-http", "--host", "0.0.0.0", "--port", str(port)],
        env={"REFLEXIO_MCP_ACCESS_TOKEN": short},
    )
    assert exited.code == 2, exited
    lines = exited.stderr.splitlines()
    assert len(lines) == 1, exited.stderr
    assert "REFLEXIO_MCP_ACCESS_TOKEN" in lines[0]
    assert "at least 16 characters" in lines[0]
    assert short not in exited.stderr


TOKENS_FILES = {
    "readable-by-others": (
        json.dumps({"tokens": [{"token": "alice-" + "z" * 24, "user_id": "alice"}]}),
        0o644,
    ),
    "bad-json": ('{"tokens": [\n', 0o600),
    "short-token": (
        json.dumps({"tokens": [{"token": "tiny-secret-1", "user_id": "alice"}]}),
        0o600,
    ),
}


@pytest.fixture(scope="module")
def tokens_file_refusals(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Exited, Path]]:
    """`reflexio-mcp --tokens-file <each of TOKENS_FILES>`, run together (each takes ~3 s)."""
    root = tmp_path_factory.mktemp("tokens-files")

    def refuse(case: str) -> tuple[Exited, Path]:
        content, mode = TOKENS_FILES[case]
        tokens = root / f"{case}.json"
        tokens.write_text(content)
        tokens.chmod(mode)
        port = free_port()
        args = ["--transport", "streamable-http", "--port", str(port), "--tokens-file", str(tokens)]
        return run_refused(root / case, port, *args), tokens

    with ThreadPoolExecutor(len(TOKENS_FILES)) as pool:
        return dict(zip(TOKENS_FILES, pool.map(refuse, TOKENS_FILES), strict=True))


def test_a_tokens_file_readable_by_others_refuses_to_start(
    tokens_file_refusals: dict[str, tuple[Exited, Path]],
) -> None:
    exited, tokens = tokens_file_refusals["readable-by-others"]
    assert exited.code == 2, exited
    last = exited.stderr.splitlines()[-1]
    assert last == (
        f"reflexio-mcp: tokens file {tokens} can be read by other users: run chmod 600 {tokens}"
    )
    assert "z" * 24 not in exited.stderr


def test_a_tokens_file_of_bad_json_refuses_to_start(
    tokens_file_refusals: dict[str, tuple[Exited, Path]],
) -> None:
    exited, tokens = tokens_file_refusals["bad-json"]
    assert exited.code == 2, exited
    last = exited.stderr.splitlines()[-1]
    assert last.startswith(f"reflexio-mcp: tokens file {tokens} is not JSON (line 2: ")
    assert '{"tokens": [{"token": "...", "user_id": "alice", "role": "write"}]}' in last


def test_a_tokens_file_with_a_short_token_refuses_to_start_and_hides_it(
    tokens_file_refusals: dict[str, tuple[Exited, Path]],
) -> None:
    exited, tokens = tokens_file_refusals["short-token"]
    assert exited.code == 2, exited
    last = exited.stderr.splitlines()[-1]
    assert last.startswith(f"reflexio-mcp: tokens file {tokens}: ")
    assert "at least 16 characters" in last
    assert "tiny-secret-1" not in exited.stderr


def test_a_tokens_file_rewritten_in_place_never_refuses_a_valid_token(
    raw: httpx2.Client, tmp_path: Path
) -> None:
    """An editor (or `cat > tokens.json`) truncates the file, then writes it in pieces."""
    tokens = tmp_path / "tokens.json"
    carol = "carol-" + "c" * 20

    def content(extra: str) -> str:
        entries = [{"token": ALICE, "user_id": "alice"}, {"token": extra, "user_id": "carol"}]
        return json.dumps({"tokens": entries}, indent=2)

    tokens.write_text(content(BOB))
    tokens.chmod(0o600)
    statuses: list[int] = []
    done = threading.Event()

    def rewrite() -> None:
        try:
            for number in range(6):
                text = content(carol if number == 5 else f"{BOB}-{number}")
                with tokens.open("r+", encoding="utf-8") as file:
                    file.truncate(0)
                    for start in range(0, len(text), 16):
                        file.write(text[start : start + 16])
                        file.flush()
                        time.sleep(0.005)
        finally:
            done.set()

    args = ["--stateless", "--rate-limit", "0", "--tokens-file", str(tokens)]
    with http_bridge(tmp_path / "bridge", *args, env=EMBEDDED) as bridge:
        writer = threading.Thread(target=rewrite)
        writer.start()
        while not done.is_set():
            statuses.append(initialize(raw, bridge, token=ALICE).status_code)
        writer.join()
        assert_initialized(initialize(raw, bridge, token=carol))  # the new file is in force
        assert initialize(raw, bridge, token=BOB).status_code == 401
    assert statuses, "no request ran while the file was rewritten"
    assert statuses.count(401) == 0, f"{statuses.count(401)} of {len(statuses)} refused"
    assert set(statuses) == {200}


# 8. /healthz ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong-token-0123456789"), {"host": "evil.example:8000"}],
    ids=["anonymous", "wrong-token", "foreign-host"],
)
def test_healthz_is_200_ok_without_a_token_and_carries_no_data(
    raw: httpx2.Client, guarded: HttpBridge, headers: dict[str, str]
) -> None:
    response = raw.get(f"{guarded.base_url}/healthz", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert "server" not in response.headers
    shown = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    workdir = str(guarded.log.parent)
    for secret in [CANARY_USER, workdir, "sqlite", __version__, "http", "127.0.0.1", "reflexio"]:
        assert secret not in shown, secret
    assert str(port_of(guarded)) not in response.text


# 9. SIGTERM drains ------------------------------------------------------------------------


@dataclass
class SlowReflexio:
    url: str
    searching: threading.Event
    searches: list[str]


@pytest.fixture
def slow_reflexio() -> Iterator[SlowReflexio]:
    """A fake Reflexio: /health answers healthy; a search answers [] after 2 s."""
    searching = threading.Event()
    searches: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer({"status": "healthy"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/api/search_interactions"):
                searches.append(self.path)
                searching.set()
                time.sleep(SLOW_SEARCH_SECONDS)
                self._answer({"success": True, "interactions": [], "msg": None})
            else:
                self._answer({"success": True, "interactions": []})

        def _answer(self, document: object) -> None:
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as port:
        yield SlowReflexio(f"http://127.0.0.1:{port}", searching, searches)


@pytest.mark.parametrize(
    "transport",
    [
        "streamable-http",
        "sse",
    ],
)
async def test_sigterm_lets_the_call_under_way_finish_then_exits_0(
    tmp_path: Path, slow_reflexio: SlowReflexio, transport: HttpTransport
) -> None:
    outcome: dict[str, Any] = {}
    signalled = 0.0
    env = {"REFLEXIO_URL": slow_reflexio.url, "REFLEXIO_MAX_RETRIES": "0"}
    with http_bridge(tmp_path, transport=transport, env=env) as bridge:
        async with http_client(bridge.endpoint, transport=transport) as client:
            # The SDK validates a structured result against the tool's output schema, listing
            # the tools if it has not yet: list them now, not while the server is draining.
            await client.list_tools()

            async def search() -> None:
                try:
                    outcome["result"] = await call(client, "search_interactions", {"query": "hi"})
                except Exception as err:  # noqa: BLE001  recorded, asserted below
                    outcome["error"] = err
                outcome["done"] = time.monotonic()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(search)
                started = await anyio.to_thread.run_sync(partial(slow_reflexio.searching.wait, 10))
                assert started, "the search never reached the fake Reflexio"
                signalled = time.monotonic()
                os.kill(bridge.process.pid, signal.SIGTERM)
                await anyio.sleep(0.1)
                async with httpx2.AsyncClient(timeout=5) as raw:
                    try:
                        health = await raw.get(f"{bridge.base_url}/healthz")
                        outcome["healthz"] = (health.status_code, health.json())
                        late = await raw.post(bridge.endpoint, json=INITIALIZE, headers=MCP_HEADERS)
                        outcome["late"] = (late.status_code, late.headers.get("retry-after"))
                    except httpx2.TransportError as err:
                        outcome["healthz"] = err
            code = await anyio.to_thread.run_sync(partial(bridge.process.wait, 10))
            exited = time.monotonic()
        log = bridge.log_text()

    assert "error" not in outcome, f"the call under way failed: {outcome.get('error')!r}\n{log}"
    failed, result, _ = outcome["result"]
    assert not failed, result
    assert result["interactions"] == []
    assert slow_reflexio.searches == ["/api/search_interactions"]
    assert outcome["done"] - signalled >= SLOW_SEARCH_SECONDS - 0.5, "finished before SIGTERM?"
    assert outcome["healthz"] == (503, {"status": "draining"}), log
    assert outcome["late"] == (503, "1")
    assert "stopping: 1 calls under way" in log
    assert code == 0, log
    assert exited - outcome["done"] < 5.0


def test_a_port_already_taken_is_refused_in_words(tmp_path: Path) -> None:
    with http_bridge(tmp_path / "first", env=EMBEDDED) as first:
        port = port_of(first)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "REFLEXIO_MCP_DATA_DIR": str(tmp_path / "second"),
            **EMBEDDED,
        }
        second = subprocess.run(
            [*bridge_command(), "--transport", "streamable-http", "--port", str(port)],
            env=environment, capture_output=True, text=True, timeout=REFUSAL_SECONDS,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert first.process.poll() is None  # the first one is unharmed
    assert second.returncode == 1, second.stderr
    assert second.stdout == ""
    assert (
        f"cannot listen on 127.0.0.1:{port}: another server may hold the port; choose another "
        "with --port (REFLEXIO_MCP_PORT)"
    ) in second.stderr
    assert "Traceback" not in second.stderr
