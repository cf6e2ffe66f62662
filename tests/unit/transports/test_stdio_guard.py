"""Lines the SDK's stdio reader cannot parse still get an answer (or a WARNING), never silence."""

from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflexio_mcp.transports.stdio_guard import UNREADABLE, checked_line
from tests.support.launch import server_command

REPLY_SECONDS = 30


def call(request_id: int | str, tool: str, arguments: str) -> bytes:
    """A tools/call line whose arguments are given as raw JSON text (so it can be broken)."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call"})[:-1]
    return f'{head}, "params": {{"name": "{tool}", "arguments": {arguments}}}}}'.encode()


BROKEN = {
    "lone surrogate": (call(1, "search_interactions", '{"query": "a\\ud800"}'), -32700),
    "5000-digit number": (call(2, "get_interactions", '{"top_k": ' + "9" * 5000 + "}"), -32700),
    "5000-deep nesting": (
        call(3, "get_interactions", '{"x": ' + "[" * 5000 + "]" * 5000 + "}"),
        -32700,
    ),
    "invalid UTF-8": (
        call(4, "search_interactions", '{"query": "a\xff"}').replace(b"\xc3\xbf", b"\xff"),
        -32700,
    ),
    "string id": (call("req-7", "get_interactions", '{"top_k": ' + "9" * 5000 + "}"), -32700),
    "not JSON-RPC": (b'{"id": 8, "method": "tools/list"}', -32600),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_request_becomes_an_error_request_with_its_own_id(name: str) -> None:
    line, code = BROKEN[name]
    replaced = json.loads(checked_line(line + b"\n"))
    assert replaced["method"] == UNREADABLE
    assert replaced["id"] == json.loads(json.dumps(replaced["id"]))
    assert replaced["params"]["code"] == code


@pytest.mark.parametrize(
    "line",
    [
        b"hello there",
        b'{"jsonrpc": "2.0", "method": "notifications/x", "params": {"a": "\\ud800"}}',
        b'{"jsonrpc": "2.0", "id": 3, "result": {"n": ' + b"9" * 5000 + b"}}",
        b'{"jsonrpc": "2.0", "id": true, "method": "ping", "x": "\\ud800"}',
    ],
)
def test_what_cannot_be_answered_is_dropped_from_the_wire(line: bytes) -> None:
    assert checked_line(line + b"\n") == b""


def test_a_carriage_return_inside_a_line_is_whitespace_not_a_line_break() -> None:
    line = b'{"jsonrpc": "2.0", "id": 7,\r"method": "tools/list"}\r\n'
    assert checked_line(line) == b'{"jsonrpc": "2.0", "id": 7, "method": "tools/list"}\n'


@pytest.mark.parametrize("request_id", ["a\nb", "\u0000", "tab\there"])
def test_a_broken_request_with_an_unprintable_id_is_still_answered(request_id: str) -> None:
    line = call(request_id, "get_interactions", '{"top_k": ' + "9" * 5000 + "}")
    assert json.loads(checked_line(line))["id"] == request_id


def test_a_good_line_passes_unchanged() -> None:
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode() + b"\n"
    assert checked_line(line) is line


def ping(request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def answerable(request_id: Any) -> int | str | None:
    """The id an answer to `request_id` carries, or None if no answer can carry it."""
    if isinstance(request_id, bool):
        return None
    if isinstance(request_id, float) and request_id.is_integer():
        return int(request_id)
    return request_id if isinstance(request_id, int | str) else None


def unreadable_ids(output: bytes) -> list[Any]:
    requests = [json.loads(line) for line in output.splitlines()]
    assert all(request["method"] == UNREADABLE for request in requests), requests
    return [request["id"] for request in requests]


@pytest.mark.parametrize(
    ("raw_id", "answered_as"), [("2.0", 2), ("-3.0", -3), ("1e3", 1000), ("0.0", 0)]
)
def test_an_integer_written_as_a_float_is_answered_with_its_integer(
    raw_id: str, answered_as: int
) -> None:
    shown = repr(float(raw_id))
    line = f'{{"jsonrpc": "2.0", "id": {raw_id}, "method": "tools/list"}}\n'.encode()
    replaced = json.loads(checked_line(line))
    assert replaced["method"] == UNREADABLE
    assert replaced["id"] == answered_as
    assert replaced["params"]["code"] == -32600
    assert replaced["params"]["problem"] == (
        f"Invalid request: id {shown} is not a string or an integer; send it as {answered_as}"
    )


@pytest.mark.parametrize("raw_id", ["1.5", "true", "null", '{"a": 1}', "[1]"])
def test_a_request_whose_id_no_answer_can_carry_is_logged(
    raw_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    line = f'{{"jsonrpc": "2.0", "id": {raw_id}, "method": "ping"}}\n'.encode()
    with caplog.at_level(logging.WARNING, "reflexio_mcp.transports.stdio_guard"):
        assert checked_line(line) == b""
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.WARNING
    assert "ignored a request" in caplog.messages[0]


def test_a_notification_with_a_null_id_is_still_a_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    line = b'{"jsonrpc": "2.0", "id": null, "method": "notifications/initialized"}\n'
    with caplog.at_level(logging.WARNING, "reflexio_mcp.transports.stdio_guard"):
        assert checked_line(line) == line
    assert caplog.records == []


def test_a_batch_has_each_request_answered_and_the_rest_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = [ping(1), ping("two"), ping(3.0), ping(1.5), {"jsonrpc": "2.0", "method": "x"}]
    with caplog.at_level(logging.WARNING, "reflexio_mcp.transports.stdio_guard"):
        output = checked_line(json.dumps(batch).encode() + b"\n")
    assert unreadable_ids(output) == [1, "two", 3]
    problem = json.loads(output.splitlines()[0])["params"]["problem"]
    assert problem.startswith("Invalid request: JSON-RPC batches are not supported")
    assert "send each message on a line of its own" in problem
    assert "ignored 2 of the 5 messages of a batch" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "reflexio_mcp.transports.stdio_guard"):
        assert checked_line(b"[]\n") == b""
    assert "empty batch" in caplog.text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "300"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ids=st.lists(JSON_VALUES, max_size=5), batch=st.booleans())
def test_any_id_in_a_message_or_a_batch_is_answered_once_or_logged(
    ids: list[Any], batch: bool, caplog: pytest.LogCaptureFixture
) -> None:
    messages = [ping(request_id) for request_id in ids]
    lines = [json.dumps(messages)] if batch else [json.dumps(m) for m in messages]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "reflexio_mcp.transports.stdio_guard"):
        outputs = [checked_line(line.encode() + b"\n") for line in lines]
    answered: list[Any] = []
    for line, output in zip(lines, outputs, strict=True):
        if output == line.encode() + b"\n":  # passed on for the SDK to serve
            answered.append(json.loads(line)["id"])
        else:
            answered += unreadable_ids(output)
    expected = [answerable(request_id) for request_id in ids]
    assert answered == [request_id for request_id in expected if request_id is not None]
    unanswered = expected.count(None) + (batch and not ids)
    assert bool(caplog.records) == bool(unanswered), caplog.text


class StdioServer:
    """The real reflexio-mcp process, spoken to in raw bytes, as a buggy client would."""

    def __init__(self, data_dir: Path, stderr: Path) -> None:
        command, args = server_command()
        self._stderr = stderr.open("wb")
        self.process = subprocess.Popen(
            [command, *args, "--backend", "embedded", "--data-dir", str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._selector = selectors.DefaultSelector()
        self._unread = b""
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def reply(self, seconds: float = REPLY_SECONDS) -> dict[str, Any] | None:
        """The next line the server wrote, read through a buffer of our own: two answers that
        arrive in one read must not leave the second in a file object's buffer, where select
        cannot see it (a batch's two answers were missed that way on a loaded machine)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + seconds
        while b"\n" not in self._unread:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(timeout=left):
                return None
            chunk = os.read(self.process.stdout.fileno(), 65_536)
            if not chunk:
                return None
            self._unread += chunk
        line, self._unread = self._unread.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            self._selector.close()
            assert self.process.stdout is not None
            self.process.stdout.close()
            self._stderr.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StdioServer]:
    running = StdioServer(tmp_path / "data", tmp_path / "stderr.log")
    try:
        running.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "1"},
                    },
                }
            ).encode()
        )
        assert running.reply() is not None
        running.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        yield running
    finally:
        running.close()


def test_every_broken_request_is_answered_and_the_server_keeps_serving(
    server: StdioServer, tmp_path: Path
) -> None:
    for name, (line, code) in BROKEN.items():
        server.send(line)
        answer = server.reply()
        assert answer is not None, f"no answer to the {name} request"
        expected_id = json.loads(checked_line(line + b"\n"))["id"]
        assert answer["id"] == expected_id, name
        assert answer["error"]["code"] == code, name
        assert answer["error"]["message"], name
    server.send(b'{"jsonrpc": "2.0", "id": 97,\r"method": "ping"}')
    answer = server.reply()
    assert answer == {"jsonrpc": "2.0", "id": 97, "result": {}}
    server.send(
        b'{"jsonrpc": "2.0", "id": 98, "method": "tools/call", '
        b'"params": {"name": "get_interactions", "arguments": [1, 2]}}'
    )
    answer = server.reply()
    assert answer is not None
    assert answer["result"]["content"][0]["text"] == (
        "invalid input: arguments: must be an object of named arguments (got a list of 2 items)"
    )
    server.send(b"hello there")
    server.send(b'{"jsonrpc": "2.0", "id": 99, "method": "tools/list"}')
    answer = server.reply()
    assert answer is not None
    assert answer["id"] == 99
    assert len(answer["result"]["tools"]) == 6
    deadline = time.monotonic() + REPLY_SECONDS
    log = tmp_path / "stderr.log"
    while "cannot be read" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (
        "WARNING reflexio_mcp.transports.stdio_guard: ignored a message from the client that "
        "cannot be read" in log.read_text()
    )


def test_requests_with_any_id_and_batches_are_answered_or_logged(
    server: StdioServer, tmp_path: Path
) -> None:
    for raw_id in ["1.5", "true", "null", '{"a": 1}', "[1]"]:
        server.send(f'{{"jsonrpc": "2.0", "id": {raw_id}, "method": "ping"}}'.encode())
    server.send(b'{"jsonrpc": "2.0", "id": 2.0, "method": "ping"}')
    answer = server.reply()
    assert answer is not None
    assert answer["id"] == 2
    assert answer["error"]["code"] == -32600
    assert "id 2.0 is not a string or an integer; send it as 2" in answer["error"]["message"]
    server.send(json.dumps([ping(10), ping("eleven"), ping(0.5)]).encode())
    answers = [server.reply(), server.reply()]
    assert [a["id"] for a in answers if a is not None] == [10, "eleven"]
    for a in answers:
        assert a is not None
        assert a["error"]["message"].startswith("Invalid request: JSON-RPC batches are not")
    server.send(json.dumps(ping(12)).encode())
    assert server.reply() == {"jsonrpc": "2.0", "id": 12, "result": {}}
    log = (tmp_path / "stderr.log").read_text()
    assert (
        log.count("WARNING reflexio_mcp.transports.stdio_guard: ignored a request whose id is") == 5
    ), log
    assert (
        "WARNING reflexio_mcp.transports.stdio_guard: ignored 1 of the 3 messages of a batch" in log
    )


def test_nan_in_tool_data_is_refused_not_stored_as_null(server: StdioServer) -> None:
    line = call(
        5,
        "publish_interaction",
        '{"interactions": [{"content": "x", "tools_used": '
        '[{"tool_name": "t", "tool_data": {"v": NaN}}]}]}',
    )
    server.send(line)
    answer = server.reply()
    assert answer is not None
    assert answer["result"]["isError"] is True
    assert answer["result"]["content"][0]["text"] == (
        "invalid input: interactions[0].tools_used[0].tool_data: NaN is not JSON: send null or a "
        "string such as 'NaN'"
    )
