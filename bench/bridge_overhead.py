"""Benchmark: what the stdio bridge adds to a call, its cold start and its memory.

    uv run python bench/bridge_overhead.py [--calls 1000] [--launches 7] [--memory-calls 10000]

In one run, on this machine, loopback only:
- P1 per call: search_interactions through reflexio-mcp over stdio with the MCP SDK's Client
  (REFLEXIO_URL at a local Reflexio 0.2.32, rate limiter off, one user seeded with 20
  turns); the same search POSTed straight to Reflexio's /api/search_interactions with httpx2
  (the very body the bridge sends); and the floor, a no-op tool of a minimal MCPServer
  launched by this script over stdio with the same SDK. `--calls` each, after a warm-up,
  in rounds with the order rotated. Targets: added p50 (bridge - direct) <= 1.3x the floor's
  p50; added p99 <= 3 ms. Each path's row also gives the CPU per call of every process in
  play (this one, "client", included): on few cores they share, CPU turns into latency.
- P2 cold start: spawn to the first tools/list answer (bare JSON-RPC lines: initialize,
  initialized, tools/list), median of `--launches`, of `python -m reflexio_mcp` (embedded
  store, an existing data folder) against the reference server `python -m mcp_server_time`
  (PyPI), installed on first run into a venv cached under ~/.cache/reflexio-mcp with the same
  interpreter. Target: ratio <= 1.0.
- P5 memory: VmRSS of the server process itself (the python that `-m` runs, no wrapper) once
  idle after tools/list, against mcp-server-time (target <= 1.1x); and of reflexio-mcp on an
  embedded store after 1,000 and after `--memory-calls` searches (target: within 5%).
Prints one table with a verdict per target. Stops every process it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_search import TOP_K, USER, WORDS, cpu_seconds, machine, settle
from reflexio_mcp import __version__
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.http import USER_AGENT
from reflexio_mcp.core.models import InteractionData, PublishRequest, SearchRequest
from reflexio_mcp.core.search_text import bounded_query
from tests.support.reflexio_server import RunningServer, cache_dir, reflexio_server, stop_group

SEED_TURNS = 20
WARM_UP_CALLS = 50
ROUNDS = 10
TARGET_ADDED_P50_FLOORS = 1.3
TARGET_ADDED_P99_MS = 3.0
TARGET_COLD_START_RATIO = 1.0
TARGET_IDLE_RSS_RATIO = 1.1
TARGET_GROWTH = 0.05
FIRST_MEMORY_MARK = 1000
IDLE_SECONDS = 5.0
TIME_SERVER_VENV = "bench-mcp-server-time"
PROTOCOL_VERSION = "2025-06-18"
PATHS = ("bridge", "direct", "floor")
FLOOR_SERVER = '''
from mcp.server import MCPServer

server = MCPServer("floor")


@server.tool()
def noop() -> str:
    """Answer a constant."""
    return "ok"


server.run("stdio")
'''
"""The floor: the least an MCP tool call over stdio costs with this SDK, server side."""


# -- measuring ----------------------------------------------------------------------------


def p50_p99(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))
    ]


def status_kib(pid: int, key: str = "VmRSS") -> int:
    """A size from /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise LookupError(f"no {key} for pid {pid}")


def children(pattern: str) -> list[int]:
    """Pids of this process's children whose command line holds `pattern`."""
    found: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if pattern in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(pid))
    return found


def wait_idle(pid: int, limit: float = IDLE_SECONDS) -> None:
    """Until the process spends under 1% of a core for half a second (or `limit` seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.005:
            return


# -- P1: per call, through the bridge, straight to Reflexio, and the floor ----------------------


def seed_requests() -> list[PublishRequest]:
    rng = random.Random(7)
    start = int(time.time()) - SEED_TURNS
    return [
        PublishRequest(
            request_id=str(uuid.uuid4()),
            user_id=USER,
            session_id="bench",
            interaction_data_list=[
                InteractionData(
                    role="user" if n % 2 == 0 else "assistant",
                    content=" ".join(rng.choices(WORDS, k=rng.randint(8, 30))).capitalize() + ".",
                    created_at=start + offset + n,
                )
                for n in range(5)
            ],
            source="bench",
        )
        for offset in range(0, SEED_TURNS, 5)
    ]


def queries(count: int) -> list[str]:
    rng = random.Random(11)
    return [" ".join(rng.sample(WORDS, rng.choice((1, 2)))) for _ in range(count)]


@dataclass
class CallPath:
    """One way of making the call, and what it measured."""

    call: Callable[[str], Awaitable[bool]]
    timings_ms: list[float] = field(default_factory=list[float])
    errors: int = 0
    pids: dict[str, int] = field(default_factory=dict[str, int])
    """The processes whose CPU the path's calls are charged (besides this one's)."""
    cpu: dict[str, float] = field(default_factory=dict[str, float])
    """CPU seconds spent during the timed calls: this process ("client") and each of `pids`."""

    def snapshot(self) -> dict[str, float]:
        taken = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        taken["client"] = time.process_time()
        return taken


async def overhead(
    reflexio: RunningServer, work: Path, calls: int, logs: tuple[TextIO, TextIO]
) -> dict[str, CallPath]:
    """p50/p99 material for the three paths, `calls` each, in ROUNDS rotated rounds."""
    url, reflexio_pid = reflexio.url, reflexio.process.pid
    texts = queries(997)
    bodies = {  # the body the bridge sends (ReflexioApi._interactions), built beforehand
        text: SearchRequest(user_id=USER, query=bounded_query(text)[0], top_k=TOP_K)
        .model_dump_json(exclude_none=True)
        .encode()
        for text in texts
    }
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    bridge_env = {"REFLEXIO_URL": url, "REFLEXIO_MCP_DATA_DIR": str(work / "bridge-data")}
    bridge_command = [sys.executable, "-m", "reflexio_mcp"]
    bridge_log, floor_log = logs
    bridge_transport = stdio_client(
        StdioServerParameters(command=bridge_command[0], args=bridge_command[1:], env=bridge_env),
        errlog=bridge_log,
    )
    floor_transport = stdio_client(
        StdioServerParameters(command=sys.executable, args=["-c", FLOOR_SERVER]),
        errlog=floor_log,
    )
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(bridge_transport) as bridge,
        Client(floor_transport) as floor,
    ):

        async def through_bridge(text: str) -> bool:
            result = await bridge.call_tool(
                "search_interactions", {"user_id": USER, "query": text, "top_k": TOP_K}
            )
            found: dict[str, Any] = result.structured_content or {}
            return not result.is_error and found.get("count", 0) > 0

        async def direct(text: str) -> bool:
            response = await http.post(
                f"{url}/api/search_interactions", content=bodies[text], headers=headers
            )
            answer = response.json()
            return response.status_code == 200 and bool(answer["interactions"])

        async def noop(_: str) -> bool:
            result = await floor.call_tool("noop", {})
            return not result.is_error

        paths = {
            "bridge": CallPath(
                through_bridge,
                pids={"reflexio-mcp": _one(children("reflexio_mcp")), "Reflexio": reflexio_pid},
            ),
            "direct": CallPath(direct, pids={"Reflexio": reflexio_pid}),
            "floor": CallPath(noop, pids={"floor server": _one(children("MCPServer"))}),
        }
        for path in paths.values():
            for text in texts[:WARM_UP_CALLS]:
                if not await path.call(text):
                    raise RuntimeError(f"a warm-up call found nothing: {text!r}")
        done = 0
        for round_ in range(ROUNDS):
            share = calls // ROUNDS + (round_ < calls % ROUNDS)
            names = list(paths)
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                await _timed(paths[name], texts, done, share)
            done += share
    return paths


def _one(pids: list[int]) -> int:
    if len(pids) != 1:
        raise RuntimeError(f"expected one server process, found {pids}")
    return pids[0]


async def _timed(path: CallPath, texts: list[str], start: int, count: int) -> None:
    before = path.snapshot()
    for n in range(start, start + count):
        began = time.perf_counter()
        ok = await path.call(texts[n % len(texts)])
        path.timings_ms.append((time.perf_counter() - began) * 1000)
        path.errors += not ok
    for name, seconds in path.snapshot().items():
        path.cpu[name] = path.cpu.get(name, 0.0) + seconds - before[name]


async def per_call(work: Path, calls: int, logs: tuple[TextIO, TextIO]) -> dict[str, CallPath]:
    """P1 against a fresh local Reflexio; the servers' stderr goes to `logs`."""
    with reflexio_server(work / "reflexio", extra_env={"RATELIMIT_ENABLED": "false"}) as server:
        async with ReflexioApi(server.url, timeout=600) as reflexio:
            for request in seed_requests():
                await reflexio.publish(request, wait_for_response=False)
        await settle(server.process.pid)
        return await overhead(server, work, calls, logs)


# -- P2 and P5: a server spoken to with bare JSON-RPC lines ---------------------------------------


class RawServer:
    """A stdio MCP server driven with bare JSON-RPC lines, so the bench knows its pid and
    adds no client library of its own to the timings."""

    def __init__(self, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.spawned = time.perf_counter()
        with open(log, "ab") as err:
            self.process = subprocess.Popen(
                command, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, start_new_session=True,
            )  # fmt: skip
        self._ids = 0
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._in: IO[bytes] = self.process.stdin
        self._out: IO[bytes] = self.process.stdout

    @property
    def pid(self) -> int:
        return self.process.pid

    def _send(self, message: dict[str, Any]) -> None:
        self._in.write(json.dumps(message).encode() + b"\n")
        self._in.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        self._send({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params})
        while True:
            line = self._out.readline()
            if not line:
                raise RuntimeError(f"the server exited ({self.process.wait()}) during {method}")
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == self._ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def handshake(self) -> None:
        self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "reflexio-mcp-bench", "version": "1"},
            },
        )
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def rss_kib(self) -> int:
        exe = os.readlink(f"/proc/{self.pid}/exe")
        if "python" not in Path(exe).name:
            raise RuntimeError(f"pid {self.pid} runs {exe}, not the python server")
        return status_kib(self.pid)

    def stop(self) -> None:
        """Close stdin (the server's cue to exit), then SIGTERM/SIGKILL its own group."""
        with contextlib.suppress(OSError):
            self._in.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_group(self.process, seconds=5)
        self._out.close()


@contextlib.contextmanager
def raw_server(command: list[str], env: Mapping[str, str], log: Path) -> Generator[RawServer]:
    server = RawServer(command, env, log)
    try:
        yield server
    finally:
        server.stop()


def time_server_python() -> Path:
    """The cached venv's python with mcp-server-time, built (with uv) on first use."""
    venv = cache_dir() / TIME_SERVER_VENV
    done = venv / ".complete"
    if not done.exists():
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": str(venv)}
        shutil.rmtree(venv, ignore_errors=True)
        for step in (
            [uv, "venv", "-q", "-p", sys.executable, str(venv)],
            [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "mcp-server-time"],
        ):
            subprocess.run(step, env=env, check=True)
        done.touch()
    return venv / "bin/python"


def versions(python: Path) -> str:
    """`mcp-server-time X (mcp Y)` of that venv."""
    code = (
        "import importlib.metadata as m; "
        "print(f\"mcp-server-time {m.version('mcp-server-time')} (mcp {m.version('mcp')})\")"
    )
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Launches:
    seconds: list[float] = field(default_factory=list[float])
    idle_kib: list[int] = field(default_factory=list[int])
    tools: int = 0


def cold_starts(work: Path, time_python: Path, launches: int) -> dict[str, Launches]:
    """Spawn to tools/list, and idle RSS, alternating the two servers; one untimed warm-up
    launch each first (the disk cache, and reflexio-mcp's data folder on its first start)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / "home")}
    servers = {
        "reflexio-mcp": (
            [sys.executable, "-m", "reflexio_mcp"],
            {**base, "REFLEXIO_MCP_DATA_DIR": str(work / "cold-data")},
        ),
        "mcp-server-time": ([str(time_python), "-m", "mcp_server_time"], base),
    }
    results = {name: Launches() for name in servers}
    for launch in range(launches + 1):
        for name, (command, env) in servers.items():
            with raw_server(command, env, work / f"{name}.log") as server:
                server.handshake()
                listed = server.request("tools/list", {})
                elapsed = time.perf_counter() - server.spawned
                wait_idle(server.pid)
                rss = server.rss_kib()
            if launch:
                results[name].seconds.append(elapsed)
                results[name].idle_kib.append(rss)
                results[name].tools = len(listed["tools"])
    return results


async def seed_embedded(folder: Path) -> None:
    async with EmbeddedStore(folder) as store:
        for request in seed_requests():
            await store.publish(request, wait_for_response=False)


@dataclass
class Growth:
    idle_kib: int
    marks: dict[int, int]
    seconds: float
    errors: int


def memory_growth(work: Path, calls: int) -> Growth:
    """RSS of reflexio-mcp on an embedded store after FIRST_MEMORY_MARK and `calls` searches."""
    folder = work / "memory-data"
    anyio.run(seed_embedded, folder)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work / "home"),
        "REFLEXIO_MCP_DATA_DIR": str(folder),
    }
    texts = queries(997)
    marks: dict[int, int] = {}
    errors = 0
    command = [sys.executable, "-m", "reflexio_mcp"]
    with raw_server(command, env, work / "memory.log") as server:
        server.handshake()
        server.request("tools/list", {})
        wait_idle(server.pid)
        idle = server.rss_kib()
        started = time.perf_counter()
        for n in range(1, calls + 1):
            arguments = {"user_id": USER, "query": texts[n % len(texts)], "top_k": TOP_K}
            result = server.call_tool("search_interactions", arguments)
            errors += bool(result.get("isError")) or not result["structuredContent"]["count"]
            if n in (FIRST_MEMORY_MARK, calls):
                marks[n] = server.rss_kib()
        seconds = time.perf_counter() - started
    return Growth(idle, marks, seconds, errors)


# -- the table --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def report(
    paths: dict[str, CallPath], starts: dict[str, Launches], growth: Growth, calls: int
) -> None:
    bridge, direct, floor = (p50_p99(paths[name].timings_ms) for name in PATHS)
    added_p50 = bridge[0] - direct[0]
    added_p99 = bridge[1] - direct[1]
    mine, reference = starts["reflexio-mcp"], starts["mcp-server-time"]
    start_ratio = statistics.median(mine.seconds) / statistics.median(reference.seconds)
    rss_ratio = statistics.median(mine.idle_kib) / statistics.median(reference.idle_kib)
    first, last = growth.marks[FIRST_MEMORY_MARK], growth.marks[max(growth.marks)]
    grown = (last - first) / first
    rows: list[tuple[str, str, str, str]] = []
    for name, label in (
        ("bridge", "search_interactions via reflexio-mcp (stdio, SDK Client)"),
        ("direct", "same search POSTed to Reflexio (httpx2)"),
        ("floor", "no-op tool of a minimal MCPServer (stdio, SDK Client)"),
    ):
        path = paths[name]
        p50, p99 = p50_p99(path.timings_ms)
        cpu = ", ".join(
            f"{name} {seconds * 1000 / len(path.timings_ms):.2f}"
            for name, seconds in path.cpu.items()
        )
        errors = f"; {path.errors} errors" if path.errors else ""
        rows.append(
            (
                f"P1 {label}",
                f"p50 {p50:.2f} / p99 {p99:.2f} ms; CPU ms/call: {cpu}{errors}",
                "-",
                "-",
            )
        )
    rows += [
        (
            "P1 added p50 (bridge - direct)",
            f"{added_p50:.2f} ms = {added_p50 / floor[0]:.2f}x floor p50",
            f"<= {TARGET_ADDED_P50_FLOORS}x floor p50 "
            f"({TARGET_ADDED_P50_FLOORS * floor[0]:.2f} ms)",
            verdict(added_p50 <= TARGET_ADDED_P50_FLOORS * floor[0]),
        ),
        (
            "P1 added p99 (bridge - direct)",
            f"{added_p99:.2f} ms",
            f"<= {TARGET_ADDED_P99_MS:g} ms",
            verdict(added_p99 <= TARGET_ADDED_P99_MS),
        ),
    ]
    for name, launches in starts.items():
        rows.append(
            (
                f"P2 cold start, {name} ({launches.tools} tools)",
                f"median {statistics.median(launches.seconds) * 1000:.0f} ms "
                f"(min {min(launches.seconds) * 1000:.0f}, max {max(launches.seconds) * 1000:.0f})",
                "-",
                "-",
            )
        )
    rows.append(
        (
            "P2 cold start ratio reflexio-mcp / mcp-server-time",
            f"{start_ratio:.2f}x",
            f"<= {TARGET_COLD_START_RATIO:g}x",
            verdict(start_ratio <= TARGET_COLD_START_RATIO),
        )
    )
    for name, launches in starts.items():
        rows.append((f"P5 idle RSS, {name}", mib(statistics.median(launches.idle_kib)), "-", "-"))
    rows += [
        (
            "P5 idle RSS ratio reflexio-mcp / mcp-server-time",
            f"{rss_ratio:.2f}x",
            f"<= {TARGET_IDLE_RSS_RATIO:g}x",
            verdict(rss_ratio <= TARGET_IDLE_RSS_RATIO),
        ),
        (
            "P5 reflexio-mcp RSS, embedded store: idle / "
            + " / ".join(f"after {n:,} searches" for n in sorted(growth.marks)),
            " / ".join(mib(kib) for kib in [growth.idle_kib, *sorted_values(growth.marks)])
            + (f"; {growth.errors} errors" if growth.errors else ""),
            "-",
            "-",
        ),
        (
            f"P5 RSS growth from {FIRST_MEMORY_MARK:,} to {max(growth.marks):,} searches",
            f"{grown:+.1%}",
            f"within {TARGET_GROWTH:.0%}",
            verdict(abs(grown) <= TARGET_GROWTH),
        ),
    ]
    print(
        f"P1: {calls} calls per path ({WARM_UP_CALLS} warm-up), {ROUNDS} rounds, order "
        f"rotated; search top_k={TOP_K} over {SEED_TURNS} turns of one user. P2/P5: "
        f"{len(mine.seconds)} launches each; {max(growth.marks):,} searches took "
        f"{growth.seconds:.0f} s"
    )
    print("| row | measured | target | verdict |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def sorted_values(marks: dict[int, int]) -> list[int]:
    return [marks[n] for n in sorted(marks)]


def main(arguments: argparse.Namespace) -> None:
    if arguments.calls < ROUNDS or arguments.memory_calls < FIRST_MEMORY_MARK:
        sys.exit(f"--calls needs >= {ROUNDS}, --memory-calls >= {FIRST_MEMORY_MARK}")
    time_python = time_server_python()
    print(f"{machine()}; reflexio-mcp {__version__}; reference {versions(time_python)}")
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work:
        base = Path(work)
        (base / "home").mkdir()
        starts = cold_starts(base, time_python, arguments.launches)
        growth = memory_growth(base, arguments.memory_calls)
        with (
            open(base / "bridge.log", "a") as bridge_log,
            open(base / "floor.log", "a") as floor_log,
        ):
            paths = anyio.run(per_call, base, arguments.calls, (bridge_log, floor_log))
    report(paths, starts, growth, arguments.calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="reflexio-mcp's per-call, start and memory costs")
    parser.add_argument("--calls", type=int, default=1000, help="P1: timed calls per path")
    parser.add_argument("--launches", type=int, default=7, help="P2/P5: timed launches each")
    parser.add_argument("--memory-calls", type=int, default=10_000, help="P5: searches")
    main(parser.parse_args())
