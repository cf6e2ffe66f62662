"""Lines the SDK's stdio reader cannot parse still get an answer (or a WARNING), never silence."""

from __future__ import annotations

import json
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reflexio_mcp.stdio_guard import UNREADABLE, checked_line
from tests.test_stdio_reflexio import server_command

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
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def reply(self, seconds: float = REPLY_SECONDS) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        if not self._selector.select(timeout=seconds):
            return None
        return json.loads(self.process.stdout.readline())

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
        "WARNING reflexio_mcp.stdio_guard: ignored a message from the client that cannot be read"
        in log.read_text()
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
