"""Benchmark: what one caller can hold of reflexio-mcp over HTTP (sessions, slow sockets).

    .venv/bin/python bench/http_exhaustion.py [--attempts 1000] [--sockets 300] [--read-timeout 2]

Starts reflexio-mcp (embedded store, Streamable HTTP with sessions, a tokens file of two
tokens, rate limit off) and:
- sessions: token A sends `--attempts` initialize requests, never closing a session; counts
  the answers (200 / 429) and the server's RSS before and after; then token B opens one;
- slow sockets: `--sockets` connections on loopback, a third silent, a third sending headers
  a byte every 0.2 s, a third a body likewise; how many are closed by the server, and when.
Prints a table. Stops the process it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.mcp_http import INITIALIZE, MCP_HEADERS, http_bridge

ALICE = "alice-" + "a" * 26
BOB = "bob-" + "b" * 28


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=1000)
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--read-timeout", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        tokens = root / "tokens.json"
        entries = [
            {"token": ALICE, "user_id": "alice", "role": "read"},
            {"token": BOB, "user_id": "bob"},
        ]
        tokens.write_text(json.dumps({"tokens": entries}))
        tokens.chmod(0o600)
        options = ["--tokens-file", str(tokens), "--rate-limit", "0"]
        options += ["--read-timeout", str(args.read_timeout), "--log-level", "WARNING"]
        env = {"REFLEXIO_MCP_BACKEND": "embedded"}
        with http_bridge(root / "bridge", *options, env=env) as bridge, httpx2.Client() as http:
            pid = bridge.process.pid
            before = rss_mib(pid)
            statuses: Counter[int] = Counter()
            for _ in range(args.attempts):
                headers = {**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
                statuses[
                    http.post(bridge.endpoint, json=INITIALIZE, headers=headers).status_code
                ] += 1
            after = rss_mib(pid)
            headers = {**MCP_HEADERS, "authorization": f"Bearer {BOB}"}
            other = http.post(bridge.endpoint, json=INITIALIZE, headers=headers).status_code
            port = int(bridge.base_url.rsplit(":", 1)[1])
            closed_after = slow_sockets(port, args.sockets, args.read_timeout)
        print(f"{'measure':<44} value")
        print(f"{'initialize attempts by one token':<44} {args.attempts}")
        for status, count in sorted(statuses.items()):
            print(f"{f'  answered {status}':<44} {count}")
        print(f"{'RSS before / after, MiB':<44} {before:.0f} / {after:.0f}")
        print(f"{'another token opens a session':<44} {other}")
        print(f"{'slow sockets (silent, headers, body)':<44} {args.sockets}")
        print(f"{'  closed by the server':<44} {len(closed_after)}")
        if closed_after:
            print(
                f"{'  closed after, s (min / median / max)':<44} {min(closed_after):.2f} / "
                f"{statistics.median(closed_after):.2f} / {max(closed_after):.2f}"
                f"  (--read-timeout {args.read_timeout:g})"
            )


def slow_sockets(port: int, count: int, read_timeout: float) -> list[float]:
    """Seconds after which the server closed each socket (those it closed)."""
    head = f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n".encode()
    body_head = (
        head
        + (
            f"authorization: Bearer {ALICE}\r\ncontent-type: application/json\r\n"
            "content-length: 100000\r\n\r\n"
        ).encode()
    )
    sockets: dict[int, tuple[socket.socket, str, float]] = {}
    for number in range(count):
        kind = ("silent", "headers", "body")[number % 3]
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if kind == "headers":
            sock.sendall(head)
        elif kind == "body":
            sock.sendall(body_head)
        sock.setblocking(False)
        sockets[number] = (sock, kind, time.monotonic())
    closed: list[float] = []
    give_up = time.monotonic() + read_timeout + 30
    try:
        while sockets and time.monotonic() < give_up:
            for number, (sock, kind, opened) in list(sockets.items()):
                try:
                    while sock.recv(4096):
                        pass
                    closed.append(time.monotonic() - opened)
                    del sockets[number]
                    continue
                except BlockingIOError:
                    pass
                except ConnectionError:
                    closed.append(time.monotonic() - opened)
                    del sockets[number]
                    continue
                if kind != "silent":
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        sock.send(b"x")
            time.sleep(0.2)
    finally:
        for sock, _, _ in sockets.values():
            sock.close()
    return closed


if __name__ == "__main__":
    main()
