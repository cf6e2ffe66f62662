"""stdio served on the event loop: real pipes to real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.launch import server_command
from tests.support.mcp_http import INITIALIZE

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def lines(*messages: object) -> bytes:
    return b"".join(json.dumps(message).encode() + b"\n" for message in messages)


def test_the_loop_path_is_taken_only_for_pipes_of_their_own(tmp_path: Path) -> None:
    probe = [sys.executable, "-c", "from reflexio_mcp.transports.stdio_pipes import _pipes; "
             "print(_pipes())"]  # fmt: skip
    separate = subprocess.run(probe, capture_output=True, stdin=subprocess.PIPE, check=True)
    shared = subprocess.run(
        probe, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True
    )
    (tmp_path / "in").write_text("")
    with (tmp_path / "in").open() as from_file:
        a_file = subprocess.run(probe, capture_output=True, stdin=from_file, check=True)
    assert [run.stdout.strip() for run in (separate, shared, a_file)] == [
        b"True",
        b"False",  # stdout and stderr one pipe: a non-blocking stdout would block stderr's writes
        b"False",
    ]


def test_answers_a_client_does_not_read_for_a_while_all_arrive_in_order(tmp_path: Path) -> None:
    # 300 tool lists (about 8 MB) fill the pipe long before the client reads: writing waits.
    command, args = server_command()
    requests = [{"jsonrpc": "2.0", "id": n, "method": "tools/list"} for n in range(2, 302)]
    server = subprocess.Popen(
        [command, *args, "--backend", "embedded", "--data-dir", str(tmp_path / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        server.stdin.write(lines(INITIALIZE, INITIALIZED, *requests))
        server.stdin.flush()
        answers = [json.loads(server.stdout.readline()) for _ in range(301)]
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()
    assert [answer["id"] for answer in answers] == list(range(1, 302))
    assert all(len(answer["result"]["tools"]) == 6 for answer in answers[1:])


def test_stray_output_of_a_handler_and_an_overlong_line_never_touch_the_wire(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from mcp.server import MCPServer
        from reflexio_mcp.transports import stdio_pipes

        stdio_pipes.MAX_LINE_BYTES = 1000
        server = MCPServer("stray")

        @server.tool()
        def noisy() -> str:
            print("stray print")
            sys.stdout.flush()
            os.write(1, b"stray write\\n")
            return "ok"

        stdio_pipes.serve_stdio(server)
        """
    )
    call: dict[str, object] = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "noisy", "arguments": {}}}  # fmt: skip
    overlong = {"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"x": "y" * 5000}}
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as errors:
        server = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        server.stdin.write(lines(INITIALIZE, INITIALIZED, overlong, call))
        server.stdin.flush()
        answers = [json.loads(server.stdout.readline()) for _ in range(2)]
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        rest = server.stdout.read()
        server.stdout.close()
    assert [answer["id"] for answer in answers] == [1, 2]
    assert answers[1]["result"]["content"][0]["text"] == "ok"
    assert not rest
    log = stderr.read_bytes()
    assert b"stray print\nstray write\n" in log
    assert b"longer than 1000 bytes" in log


def test_a_client_that_stops_reading_ends_the_server_without_a_traceback(tmp_path: Path) -> None:
    command, args = server_command()
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as errors:
        server = subprocess.Popen(
            [command, *args, "--backend", "embedded", "--data-dir", str(tmp_path / "data")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdout.close()  # before the answer: writing it finds the pipe closed
    try:
        server.stdin.write(lines(INITIALIZE))
        server.stdin.flush()
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        server.stdin.close()
    log = stderr.read_text()
    assert "the client stopped reading stdout" in log
    assert "Traceback" not in log
