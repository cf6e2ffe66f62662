"""Benchmark: cold start, and what the first invalid argument of a session costs.

    uv run python bench/first_call.py [--runs 9] [--repo DIR ...] [--idle 1.0]

Spawns `uv run reflexio-mcp --backend embedded --data-dir <temp>` in each `--repo` (default:
this checkout; give another worktree too, e.g. `git worktree add /tmp/before <commit>`, to
compare commits: their runs alternate, so the machine's load weighs on both alike) and speaks
bare JSON-RPC lines to it over stdio (no client library in the timings). No Reflexio is needed.
Per run, one fresh server each for:
- initialize: spawn to the initialize answer;
- tools/list: spawn to the answer of tools/list sent right after initialize;
- first invalid argument: `search_interactions` with `start_time: "yesterday"` sent as the
  first request after initialize, send to answer (its error message is checked for secrets,
  so it needs the secret scanner's rules); and the same after `--idle` seconds of quiet
  following initialize (a client whose model takes a moment before its first call);
- second invalid argument: the same call again, once the first was answered.
Prints one table: per checkout, the median of `--runs` runs (after one untimed warm-up) and
the min-max.
Stops every process it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

DEFAULT_REPO = Path(__file__).resolve().parent.parent
REPLY_SECONDS = 30.0
INVALID_CALL = {
    "name": "search_interactions",
    "arguments": {"query": "x", "start_time": "yesterday"},
}


class Server:
    """One reflexio-mcp process on an embedded store, driven with bare JSON-RPC lines."""

    def __init__(self, repo: Path, data: Path, log: Path) -> None:
        uv = shutil.which("uv") or "uv"
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("REFLEXIO_URL", None)
        # The warm-up run writes the bytecode an installed server has (else every start
        # compiles every module again, which is most of a cold start, and differs by checkout).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        with log.open("ab") as err:
            self.spawned = time.perf_counter()
            self.process = subprocess.Popen(
                [uv, "run", "reflexio-mcp", "--backend", "embedded", "--data-dir", str(data)],
                cwd=repo, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._in: IO[bytes] = self.process.stdin
        self._out: IO[bytes] = self.process.stdout
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._out, selectors.EVENT_READ)
        self._ids = 0

    def send(self, message: dict[str, Any]) -> None:
        self._in.write(json.dumps(message).encode() + b"\n")
        self._in.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of one request (notifications in between are skipped)."""
        self._ids += 1
        self.send({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params})
        while True:
            if not self._selector.select(timeout=REPLY_SECONDS):
                raise RuntimeError(f"no answer to {method} within {REPLY_SECONDS} s")
            line = self._out.readline()
            if not line:
                raise RuntimeError(f"the server exited ({self.process.wait()}) during {method}")
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == self._ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def initialize(self) -> float:
        """Seconds from spawn to the initialize answer; then says it is initialized."""
        self.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "reflexio-mcp-bench", "version": "1"},
            },
        )
        answered = time.perf_counter() - self.spawned
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answered

    def invalid_call(self) -> float:
        """Seconds from sending the invalid search to its (error) answer."""
        started = time.perf_counter()
        result = self.request("tools/call", INVALID_CALL)
        elapsed = time.perf_counter() - started
        text = " ".join(block.get("text", "") for block in result.get("content", []))
        if not result.get("isError") or "start_time" not in text:
            raise RuntimeError(f"expected an invalid-input answer about start_time, got {text!r}")
        return elapsed

    def stop(self) -> None:
        """Close stdin (the server's cue to exit); kill it if it does not."""
        self._in.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            self._selector.close()
            self._out.close()


@dataclass
class Samples:
    seconds: dict[str, list[float]] = field(default_factory=dict[str, list[float]])

    def add(self, row: str, value: float) -> None:
        self.seconds.setdefault(row, []).append(value)


def one_run(repo: Path, work: Path, idle: float, samples: Samples | None) -> None:
    def record(row: str, value: float) -> None:
        if samples is not None:
            samples.add(row, value)

    log = work / "stderr.log"
    server = Server(repo, work / "data", log)
    try:
        record("spawn -> initialize answer", server.initialize())
    finally:
        server.stop()

    server = Server(repo, work / "data", log)
    try:
        server.initialize()
        server.request("tools/list", {})
        record("spawn -> tools/list answer", time.perf_counter() - server.spawned)
    finally:
        server.stop()

    server = Server(repo, work / "data", log)
    try:
        server.initialize()
        record("first invalid argument, right after initialize", server.invalid_call())
        record("second invalid argument", server.invalid_call())
    finally:
        server.stop()

    server = Server(repo, work / "data", log)
    try:
        server.initialize()
        time.sleep(idle)
        record(f"first invalid argument, {idle:g} s after initialize", server.invalid_call())
    finally:
        server.stop()


def commit(repo: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()[:72] or "?"


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; load "
        f"average before {os.getloadavg()[0]:.2f}"
    )


def main(arguments: argparse.Namespace) -> None:
    repos: list[Path] = [repo.resolve() for repo in arguments.repo or [DEFAULT_REPO]]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    for repo in repos:
        print(f"server: uv run reflexio-mcp in {repo} ({commit(repo)})")
    samples = {repo: Samples() for repo in repos}
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work:
        folders = {repo: Path(work) / str(at) for at, repo in enumerate(repos)}
        for repo in repos:
            folders[repo].mkdir()
            one_run(repo, folders[repo], arguments.idle, None)  # warm-up: disk cache, data folder
        for _ in range(arguments.runs):
            for repo in repos:
                one_run(repo, folders[repo], arguments.idle, samples[repo])
    print()
    print(
        f"| {arguments.runs} runs, ms: median (min-max) | " + " | ".join(map(label, repos)) + " |"
    )
    print("|---|" + "---|" * len(repos))
    for row in samples[repos[0]].seconds:
        cells: list[str] = []
        for repo in repos:
            ms = [s * 1000 for s in samples[repo].seconds[row]]
            cells.append(f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})")
        print(f"| {row} | " + " | ".join(cells) + " |")


def label(repo: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or repo.name


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="reflexio-mcp's cold start and first invalid call")
    parser.add_argument("--runs", type=int, default=9, help="timed runs (after one warm-up)")
    parser.add_argument(
        "--repo",
        type=Path,
        action="append",
        help="a checkout whose server to spawn (default: this one); repeat to compare",
    )
    parser.add_argument(
        "--idle", type=float, default=1.0, help="seconds of quiet before the later first call"
    )
    main(parser.parse_args())
