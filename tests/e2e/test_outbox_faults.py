"""A Reflexio that hangs, fails, answers garbage, or is gone; an outbox that is full or cannot
be opened. The real reflexio-mcp process over stdio, against a fake Reflexio in a thread of
this process (on a loopback port) whose behaviour each test switches.

Every tool call must be answered within the deadline, every failure in words (never a
traceback), and every publish the tool accepted must reach the backend exactly once when it
answers again.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import anyio
import pytest

from tests.support.stdio_bridge import DEADLINE, Bridge, bridge

TEST_SECONDS = 90.0
HANG_SECONDS = 60.0
"""A hanging request is dropped after this at the latest (or when the test releases it)."""
PUBLISH = "/api/publish_interaction"

Mode = Literal[
    "healthy", "hang", "trickle", "unavailable_json", "unavailable_text", "html", "bad_json"
]
FAULTS: dict[Mode, str] = {
    "hang": "did not answer",
    "unavailable_json": "(503: Service temporarily unavailable)",
    "unavailable_text": "with 503 Service Unavailable and a text/plain body",
    "html": "is not a Reflexio server",
    "bad_json": "with something that is not its API",
}
"""What an error caused by each faulty mode says."""


# -- the fake Reflexio ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict[str, str])
    trickle_until: threading.Event | None = None
    """Send the headers, then one byte of the body every half second until this is set."""


def json_reply(document: object, status: int = 200) -> Reply:
    return Reply(status, "application/json", json.dumps(document).encode())


class FakeReflexio:
    """Reflexio's API as the bridge uses it, on 127.0.0.1:`port`, with a switchable `mode`.

    healthy           answers like Reflexio 0.2: a request_id stored before is answered
                      200 {"success": false, "message": "request_id 'X' already exists"};
                      nothing is learned (learning_status: not_tracked)
    hang              reads the request, never answers (until released: then drops it)
    trickle           answers 200 and its headers at once, then a byte of the body every
                      half second (each read is quick; the answer never completes)
    unavailable_*     503 with Retry-After: 1, a JSON or a plain-text body
    html / bad_json   200 with a web page / with invalid JSON labelled application/json

    `start` and `stop` may be called repeatedly: stopped, the port refuses connections.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mode: Mode = "healthy"
        self.store_before_hang = False
        """In hang mode, store a publish before hanging (committed, but the answer is lost)."""
        self.turns: list[dict[str, Any]] = []
        self.stores: Counter[str] = Counter()
        """request_id -> times it was stored (must never pass 1)."""
        self.already_exists: Counter[str] = Counter()
        """request_id -> times a publish was answered "already exists"."""
        self.received: list[tuple[Mode, str]] = []
        """(mode, request_id) of every publish received, in order."""
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, mode: Mode = "healthy") -> None:
        assert self._server is None, "already started"
        self.set_mode(mode)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._release.set()  # hanging handlers return
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            if mode in ("hang", "trickle") and self._release.is_set():
                self._release = threading.Event()
            elif mode not in ("hang", "trickle"):
                self._release.set()
            self.mode = mode

    def received_in(self, mode: Mode) -> list[str]:
        with self._lock:
            return [request_id for seen, request_id in self.received if seen == mode]

    def stored_turns(self) -> Counter[str]:
        """request_id -> turns stored under it."""
        with self._lock:
            return Counter(turn["request_id"] for turn in self.turns)

    def respond(self, method: str, path: str, raw: bytes) -> Reply | None:
        """The answer to one request; None: drop the connection without one."""
        document: dict[str, Any] = cast(dict[str, Any], json.loads(raw)) if raw else {}
        with self._lock:
            mode, release = self.mode, self._release
            if method == "POST" and path == PUBLISH:
                request_id = str(document["request_id"])
                self.received.append((mode, request_id))
                if mode == "hang" and self.store_before_hang and not self.stores[request_id]:
                    self._publish(document)
        if mode == "hang":
            release.wait(HANG_SECONDS)
            return None
        if mode == "trickle":
            return Reply(200, "application/json", b" " * 1000, trickle_until=release)
        if mode == "unavailable_json":
            reply = json_reply({"detail": "Service temporarily unavailable"}, 503)
            return Reply(503, reply.content_type, reply.body, {"Retry-After": "1"})
        if mode == "unavailable_text":
            return Reply(503, "text/plain", b"Service Unavailable", {"Retry-After": "1"})
        if mode == "html":
            return Reply(200, "text/html; charset=utf-8", b"<!doctype html><p>Welcome!</p>")
        if mode == "bad_json":
            return Reply(200, "application/json", b'{"success": true, "interactions": [')
        with self._lock:
            return self._reflexio(method, path, document)

    def _reflexio(self, method: str, path: str, document: dict[str, Any]) -> Reply:
        if method == "GET" and path == "/health":
            return json_reply({"status": "healthy"})
        if method == "POST" and path == PUBLISH:
            return json_reply(self._publish(document))
        if method == "GET" and path == "/api/learning_status":  # this Reflexio learns nothing
            return json_reply({"status": "not_tracked", "reason": None})
        if method == "POST" and path in ("/api/search_interactions", "/api/get_interactions"):
            return json_reply({"success": True, "interactions": self._search(document)})
        if method == "DELETE" and path == "/api/delete_interaction":
            gone = document.get("interaction_id")
            self.turns = [t for t in self.turns if t["interaction_id"] != gone]
            return json_reply({"success": True, "message": "Deleted successfully"})
        return json_reply({"detail": "Not Found"}, 404)

    def _publish(self, document: dict[str, Any]) -> dict[str, Any]:
        request_id = str(document["request_id"])
        if self.stores[request_id]:
            self.already_exists[request_id] += 1
            return {"success": False, "message": f"request_id '{request_id}' already exists"}
        self.stores[request_id] += 1
        for turn in cast(list[dict[str, Any]], document["interaction_data_list"]):
            self.turns.append(
                {
                    "interaction_id": len(self.turns) + 1,
                    "user_id": document["user_id"],
                    "request_id": request_id,
                    "created_at": int(time.time()),
                    "role": turn.get("role", "User"),
                    "content": turn.get("content", ""),
                }
            )
        return {"success": True, "message": "Interaction published successfully"}

    def _search(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        request_id = document.get("request_id")
        words = str(document.get("query") or "").lower().split()
        found = [
            turn
            for turn in self.turns
            if turn["user_id"] == document.get("user_id")
            and (request_id is None or turn["request_id"] == request_id)
            and (not words or any(w in str(turn["content"]).lower() for w in words))
        ]
        count = int(document.get("most_recent_k") or document.get("top_k") or 10)
        return found[-count:]


def _handler(fake: FakeReflexio) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a stopped fake refuses the next request
        # instead of serving it on a kept-alive connection.
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            reply = fake.respond(self.command, self.path.partition("?")[0], raw)
            if reply is None:
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.trickle_until is None:
                self.wfile.write(reply.body)
                return
            started = time.monotonic()
            for byte in range(len(reply.body)):
                if reply.trickle_until.wait(0.5) or time.monotonic() - started > HANG_SECONDS:
                    return  # released: drop the connection mid-answer
                self.wfile.write(reply.body[byte : byte + 1])
                self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeReflexio]:
    """A fake Reflexio on a free port, not started: the test starts (and may stop) it."""
    backend = FakeReflexio(free_port())
    try:
        yield backend
    finally:
        backend.stop()


# -- the bridge: the real reflexio-mcp over stdio ---------------------------------------------


async def faulty_reads(mcp: Bridge, user_id: str, fault: str, url: str) -> None:
    """Each read is an error naming the fault and the backend, answered in time."""
    for tool, arguments in [
        ("get_interactions", {"user_id": user_id}),
        ("search_interactions", {"user_id": user_id, "query": "lisbon"}),
        ("delete_interaction", {"user_id": user_id, "interaction_id": 1}),
        ("get_interactions", {"user_id": user_id, "top_k": 5}),
    ]:
        answer = await mcp.call(tool, arguments)
        assert answer.failed, (tool, answer.text)
        assert fault in answer.text, (tool, answer.text)
        assert url in answer.text, (tool, answer.text)


def assert_exactly_once(fake: FakeReflexio, request_ids: list[str], turns: int = 2) -> None:
    """The fake stored each publish once, all its turns, and nothing else."""
    assert fake.stores == Counter(dict.fromkeys(request_ids, 1))
    assert fake.stored_turns() == Counter(dict.fromkeys(request_ids, turns))
    # Once it answered again, each publish was sent to it once (no duplicate deliveries).
    assert Counter(fake.received_in("healthy")) == Counter(request_ids)


# -- the tests --------------------------------------------------------------------------------


async def test_a_hanging_backend_stalls_no_call_and_loses_no_publish(
    fake: FakeReflexio, tmp_path: Path, user_id: str
) -> None:
    fake.store_before_hang = True  # the first publish is stored, but its answer never comes
    fake.start("hang")
    fault = FAULTS["hang"]
    with anyio.fail_after(TEST_SECONDS):
        async with bridge(fake.url, tmp_path / "data", tmp_path / "bridge.log") as mcp:
            mcp.faulty = True
            first = await mcp.queued(user_id, "first", fault, session_id="s1")
            assert first in fake.received_in("hang")
            await faulty_reads(mcp, user_id, fault, fake.url)
            ids = [first]
            for content, session in [("second", "s1"), ("third", "s2"), ("fourth", "s1")]:
                ids.append(await mcp.queued(user_id, content, fault, session_id=session))
            for request_id in ids:
                status = await mcp.publish_status(user_id, request_id)
                assert status["status"] == "queued", status
            first_status = await mcp.publish_status(user_id, first)
            assert first_status["attempts"] >= 1
            assert fault in first_status["last_error"]
            outbox = (await mcp.status())["outbox"]
            assert outbox["waiting"] == 4
            assert outbox["circuit"] == "open"
            assert fault in outbox["last_error"]

            fake.set_mode("healthy")
            mcp.faulty = False
            await mcp.wait_delivered(user_id, ids)
            listed = await mcp.call("get_interactions", {"user_id": user_id})
            assert not listed.failed, listed.text
            assert listed.data["count"] == 8
            outbox = (await mcp.status())["outbox"]
            assert (outbox["waiting"], outbox["failed"], outbox["circuit"]) == (0, 0, "closed")
    assert_exactly_once(fake, ids)
    # The first was stored while the fake hung: sent again, it was answered "already
    # exists", which the bridge took as delivered, not as a failure.
    assert fake.already_exists == Counter({first: 1})
    # Each session's publishes arrived in the order they were made.
    healthy = fake.received_in("healthy")
    assert [i for i in healthy if i in (ids[0], ids[1], ids[3])] == [ids[0], ids[1], ids[3]]
    mcp.report("hanging backend")


@pytest.mark.parametrize("mode", ["unavailable_json", "unavailable_text"])
async def test_503_with_retry_after_keeps_publishes_and_delivers_each_once(
    fake: FakeReflexio, tmp_path: Path, user_id: str, mode: Mode
) -> None:
    await _faulty_then_healthy(fake, tmp_path, user_id, mode)


@pytest.mark.parametrize("mode", ["html", "bad_json"])
async def test_garbage_answers_are_named_and_publishes_kept_until_reflexio_answers(
    fake: FakeReflexio, tmp_path: Path, user_id: str, mode: Mode
) -> None:
    await _faulty_then_healthy(fake, tmp_path, user_id, mode)


async def _faulty_then_healthy(
    fake: FakeReflexio, tmp_path: Path, user_id: str, mode: Mode
) -> None:
    fake.start(mode)
    fault = FAULTS[mode]
    with anyio.fail_after(TEST_SECONDS):
        async with bridge(fake.url, tmp_path / "data", tmp_path / "bridge.log") as mcp:
            mcp.faulty = True
            ids = [await mcp.queued(user_id, "first", fault)]
            await faulty_reads(mcp, user_id, fault, fake.url)
            ids += [await mcp.queued(user_id, f"later {n}", fault) for n in range(2)]
            status = await mcp.publish_status(user_id, ids[0])
            assert status["status"] == "queued", status
            assert fault in status["last_error"]
            assert (await mcp.status())["outbox"]["waiting"] == 3
            fake.set_mode("healthy")
            mcp.faulty = False
            await mcp.wait_delivered(user_id, ids)
    assert fake.received_in(mode)[0] == ids[0]
    assert_exactly_once(fake, ids)
    assert not fake.already_exists
    assert fake.received_in("healthy") == ids  # one session: in order
    mcp.report(mode)


async def test_a_full_outbox_refuses_in_words_and_keeps_what_it_holds(
    fake: FakeReflexio, tmp_path: Path, user_id: str
) -> None:
    data_dir = tmp_path / "data"
    with anyio.fail_after(TEST_SECONDS):
        async with bridge(
            fake.url, data_dir, tmp_path / "bridge.log", REFLEXIO_MCP_OUTBOX_MAX_ROWS="3"
        ) as mcp:
            mcp.faulty = True
            ids = [await mcp.queued(user_id, "first", "connection refused")]
            ids += [await mcp.queued(user_id, f"more {n}", "") for n in range(2)]
            refused = await mcp.publish(user_id, "one too many", request_id="over-the-cap")
            assert refused.failed
            for part in (
                "not stored: the outbox",
                "is full",
                "the cap is 3 publishes",
                "Nothing was dropped",
                "REFLEXIO_MCP_OUTBOX_MAX_ROWS",
            ):
                assert part in refused.text, refused.text
            for request_id in ids:
                status = await mcp.publish_status(user_id, request_id)
                assert status["status"] == "queued", status
            status = await mcp.publish_status(user_id, "over-the-cap")
            assert status["status"] == "unknown", status
            assert (await mcp.status())["outbox"]["waiting"] == 3
            with contextlib.closing(sqlite3.connect(data_dir / "outbox.sqlite3")) as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

            fake.start("healthy")  # on the very port that refused
            mcp.faulty = False
            await mcp.wait_delivered(user_id, ids)
            accepted = await mcp.publish(user_id, "room again")
            assert not accepted.failed, accepted.text
            assert accepted.data["status"] == "stored", accepted.data
    ids.append(str(accepted.data["request_id"]))
    assert_exactly_once(fake, ids)
    assert fake.received_in("healthy") == ids
    mcp.report("outbox full")


async def test_an_outbox_that_cannot_be_opened_sends_straight_or_refuses_with_both_reasons(
    fake: FakeReflexio, tmp_path: Path, user_id: str
) -> None:
    # Running as root, a read-only folder is still writable: a folder below a regular file
    # cannot be created by anyone.
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    data_dir = blocker / "data"
    outbox_file = data_dir / "outbox.sqlite3"
    with anyio.fail_after(TEST_SECONDS):
        async with bridge(fake.url, data_dir, tmp_path / "bridge.log") as mcp:
            mcp.faulty = True
            refused = await mcp.publish(user_id, "nowhere to go", request_id="refused-one")
            assert refused.failed
            for part in (
                "not stored",
                f"Reflexio backend unreachable at {fake.url} (connection refused)",
                f"cannot open the outbox at {outbox_file}",
                "Not a directory",
            ):
                assert part in refused.text, refused.text
            outbox = (await mcp.status())["outbox"]
            assert outbox["available"] is False
            assert f"cannot open the outbox at {outbox_file}" in outbox["last_error"]

            fake.start("healthy")
            mcp.faulty = False
            straight = await mcp.publish(user_id, "straight through")
            assert not straight.failed, straight.text
            assert straight.data["status"] == "stored", straight.data
            [warning] = straight.data["warnings"]
            assert warning.startswith("sent straight to Reflexio, without the outbox ("), warning
            assert str(outbox_file) in warning
            through = str(straight.data["request_id"])
            status = await mcp.publish_status(user_id, through)
            assert status["status"] == "delivered", status

            # The folder can be created now: the outbox opens again and journals publishes.
            fake.stop()
            blocker.unlink()
            mcp.faulty = True
            journaled = await mcp.queued(user_id, "journaled again", "connection refused")
            status = await mcp.publish_status(user_id, journaled)
            assert status["status"] == "queued", status
            assert outbox_file.exists()
            outbox = (await mcp.status())["outbox"]
            assert (outbox["available"], outbox["waiting"]) == (True, 1)

            fake.start("healthy")
            mcp.faulty = False
            await mcp.wait_delivered(user_id, [journaled])
            status = await mcp.publish_status(user_id, "refused-one")
            assert status["status"] == "unknown", status  # refused: nothing kept to deliver
    assert_exactly_once(fake, [through, journaled])
    assert "refused-one" not in fake.stores
    mcp.report("outbox cannot be opened")


@pytest.mark.parametrize(
    ("mode", "env"),
    [
        pytest.param("trickle", {}, id="answer-trickles"),
        pytest.param("hang", {"REFLEXIO_TIMEOUT": "30"}, id="hangs-timeout-above-deadline"),
    ],
)
async def test_a_publish_the_backend_stalls_is_answered_queued_before_the_deadline(
    fake: FakeReflexio, tmp_path: Path, user_id: str, mode: Mode, env: dict[str, str]
) -> None:
    """The publish is journaled: it must be answered `queued` with its request_id, not cut by
    the deadline into an error that hides the request_id (a caller retrying it would store
    the conversation twice). REFLEXIO_TIMEOUT bounds each read of the answer, not the whole
    answer, so a backend that trickles its answer is never timed out; and a REFLEXIO_TIMEOUT
    above the deadline lets the publish's own attempt (min(timeout, 10 s)) outlast it."""
    fake.start(mode)
    with anyio.fail_after(TEST_SECONDS):
        async with bridge(fake.url, tmp_path / "data", tmp_path / "bridge.log", **env) as mcp:
            mcp.faulty = True
            answer = await mcp.publish(user_id, "a slow one")
            assert answer.seconds < DEADLINE, answer
            assert not answer.failed, answer.text
            assert answer.data["status"] == "queued", answer.data
            request_id = str(answer.data["request_id"])
            status = await mcp.publish_status(user_id, request_id)
            assert status["status"] == "queued", status
            fake.set_mode("healthy")
            mcp.faulty = False
            await mcp.wait_delivered(user_id, [request_id])
    assert_exactly_once(fake, [request_id])
    mcp.report(f"stalled publish ({mode})")
