"""Benchmark: search_interactions through reflexio-mcp over Streamable HTTP vs straight to Reflexio.

    .venv/bin/python bench/http_search.py [--clients 50] [--calls 20] [--rounds 3]

Starts a local Reflexio 0.2.32 (the tests' cached venv, rate limiter off), seeds one user's
interactions, and starts reflexio-mcp twice over Streamable HTTP: `--stateless`, and stateful
(server-held sessions), both with its HTTP rate limit off. Then, in one run, rounds of
(order rotated each round):
- direct: `--clients` tasks sharing one HTTP client (httpx2 defaults, as the bridge's own), each
  POSTing Reflexio's /api/search_interactions `--calls` times: the very body the bridge sends;
- bridge, stateless and stateful: `--clients` MCP SDK clients, sessions opened beforehand and
  kept open, each calling the search_interactions tool `--calls` times, same queries.
Prints the machine, throughput, p50/p99 latency, the bridge/direct ratios against their
targets (throughput >= 0.9x, added p99 <= 5 ms), the CPU each process spent per call, and the
same calls from a single client (no queueing). Stops every process it starts.

Everything runs on this machine: with few cores, the bench's own clients (the MCP SDK client
costs more CPU per call than a plain HTTP one), reflexio-mcp and Reflexio share them, so read
the ratios with the CPU columns. `--bridge-log-level WARNING` shows what the SDK's per-request
INFO lines cost.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.http import USER_AGENT
from reflexio_mcp.core.models import InteractionData, PublishRequest, SearchRequest
from tests.support.mcp_http import HttpBridge, http_bridge
from tests.support.reflexio_server import RunningServer, reflexio_server

USER = "bench-user"
TOP_K = 10
TURNS_PER_PUBLISH = 50
TARGET_RATIO = 0.9
TARGET_ADDED_P99_MS = 5.0
SETTLE_SECONDS = 60.0
"""Reflexio learns from publishes in the background; measuring waits (this long at most) for
it to go idle."""
WORDS = [
    "order", "refund", "shipping", "invoice", "password", "login", "account", "deploy", "server",
    "database", "query", "index", "latency", "timeout", "retry", "billing", "subscription",
    "upgrade", "bug", "crash", "memory", "profile", "playbook", "agent", "customer", "ticket",
    "warranty", "replacement", "screen", "battery", "delivery", "address", "schedule", "meeting",
]  # fmt: skip

Route = Literal[
    "direct", "bridge, stateless, plain client", "bridge, stateless", "bridge, stateful"
]
ROUTES: list[Route] = [
    "direct",
    "bridge, stateless, plain client",
    "bridge, stateless",
    "bridge, stateful",
]
"""`plain client`: the same httpx2 load generator as `direct`, POSTing the JSON-RPC tools/call
itself (stateless needs no handshake), so the bench's own client costs the same on both sides
of the ratio; the other bridge rows use the MCP SDK's Client, as an agent would."""


@dataclass
class Phase:
    """What one path did in one round."""

    latencies_ms: list[float] = field(default_factory=list[float])
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict[str, float])
    """CPU seconds each process spent during the phase."""
    errors: int = 0


@dataclass
class Totals:
    phases: list[Phase] = field(default_factory=list[Phase])

    @property
    def calls(self) -> int:
        return sum(len(p.latencies_ms) for p in self.phases)

    @property
    def throughput(self) -> float:
        return self.calls / sum(p.seconds for p in self.phases)

    def percentile(self, q: float) -> float:
        ordered = sorted(ms for p in self.phases for ms in p.latencies_ms)
        if q == 0.5:
            return statistics.median(ordered)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def cpu_ms_per_call(self, process: str) -> float:
        return sum(p.cpu.get(process, 0.0) for p in self.phases) * 1000 / self.calls

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.phases)


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU of the processes in play (Reflexio, the bridges, this one) over a phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def snapshot(self) -> dict[str, float]:
        taken = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        taken["bench client"] = time.process_time()
        return taken

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {name: now[name] - before[name] for name in now}


async def settle(pid: int) -> None:
    """Wait until the process uses under 5% of a core for a second (Reflexio's learning
    after the seeding), or SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await anyio.sleep(1.0)
        if cpu_seconds(pid) - before < 0.05:
            return


# -- the load ----------------------------------------------------------------------------


def seed_requests(turns: int) -> list[PublishRequest]:
    rng = random.Random(7)
    start = int(time.time()) - turns
    requests: list[PublishRequest] = []
    for offset in range(0, turns, TURNS_PER_PUBLISH):
        data = [
            InteractionData(
                role="user" if n % 2 == 0 else "assistant",
                content=" ".join(rng.choices(WORDS, k=rng.randint(8, 30))).capitalize() + ".",
                created_at=start + offset + n,
            )
            for n in range(min(TURNS_PER_PUBLISH, turns - offset))
        ]
        requests.append(
            PublishRequest(
                request_id=str(uuid.uuid4()),
                user_id=USER,
                session_id="bench",
                interaction_data_list=data,
                source="bench",
            )
        )
    return requests


def queries(count: int) -> list[str]:
    rng = random.Random(11)
    return [" ".join(rng.sample(WORDS, rng.choice((1, 2)))) for _ in range(count)]


@functools.cache  # built before the clock starts, as the bridge builds its own
def search_body(query: str) -> bytes:
    """What reflexio-mcp POSTs to /api/search_interactions for search_interactions(query,
    top_k) (ReflexioApi._interactions)."""
    request = SearchRequest(user_id=USER, query=query, top_k=TOP_K)
    return request.model_dump_json(exclude_none=True).encode()


class StartLine:
    """Workers open their connections, wait for each other, start together; the phase's time
    and CPU run from the start to the last worker's last answer (closing is not counted)."""

    def __init__(self, workers: int, meter: Meter) -> None:
        self._workers = workers
        self._meter = meter
        self._ready = 0
        self._done = 0
        self._all_ready = anyio.Event()
        self._go = anyio.Event()
        self._before: dict[str, float] = {}
        self.started = self.ended = 0.0
        self.cpu: dict[str, float] = {}

    async def ready(self) -> None:
        self._ready += 1
        if self._ready == self._workers:
            self._all_ready.set()
        await self._go.wait()

    def done(self) -> None:
        self._done += 1
        if self._done == self._workers:
            self.ended = time.perf_counter()
            self.cpu = self._meter.since(self._before)

    def recorded(self, phase: Phase) -> Phase:
        """`phase` with the time and CPU from the start to the last worker's last answer."""
        phase.seconds = self.ended - self.started
        phase.cpu = self.cpu
        return phase

    async def run(self, work: Callable[[int, StartLine], Coroutine[Any, Any, None]]) -> None:
        async with anyio.create_task_group() as tasks:
            for index in range(self._workers):
                tasks.start_soon(work, index, self)
            await self._all_ready.wait()
            self._before = self._meter.snapshot()
            self.started = time.perf_counter()
            self._go.set()


Post = Callable[[httpx2.AsyncClient, str], Coroutine[Any, Any, bool]]
"""One call of a plain-HTTP load generator: POST the search for a query; True if it worked."""


async def plain_phase(
    name: str, post: Post, clients: int, calls: int, texts: list[str], meter: Meter
) -> Phase:
    """`clients` tasks sharing one httpx2 client, each making `calls` POSTs."""
    phase = Phase()
    async with httpx2.AsyncClient(timeout=30) as http:

        async def work(index: int, line: StartLine) -> None:
            await line.ready()
            for k in range(calls):
                query = texts[(index * calls + k) % len(texts)]
                began = time.perf_counter()
                try:
                    ok = await post(http, query)
                except httpx2.TransportError as err:
                    ok = False
                    print(f"  {name}: {err!r}", file=sys.stderr)
                phase.latencies_ms.append((time.perf_counter() - began) * 1000)
                phase.errors += not ok
            line.done()

        line = StartLine(clients, meter)
        await line.run(work)
    return line.recorded(phase)


def direct_post(url: str) -> Post:
    """Reflexio's own search endpoint, with the body reflexio-mcp sends."""
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Content-Type": "application/json",
    }

    async def post(http: httpx2.AsyncClient, query: str) -> bool:
        response = await http.post(
            f"{url}/api/search_interactions", content=search_body(query), headers=headers
        )
        return response.status_code == 200 and response.json().get("success") is True

    return post


def json_rpc_post(endpoint: str) -> Post:
    """The search_interactions tool called with a bare JSON-RPC POST (stateless: no
    handshake needed)."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
    }

    async def post(http: httpx2.AsyncClient, query: str) -> bool:
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "search_interactions",
                "arguments": {"user_id": USER, "query": query, "top_k": TOP_K},
            },
        }
        response = await http.post(endpoint, json=call, headers=headers)
        answer = response.text.partition("data: ")[2]  # one SSE event: the answer
        return response.status_code == 200 and '"isError":false' in answer

    return post


async def bridge_phase(
    endpoint: str,
    mode: Literal["auto", "legacy"],
    clients: int,
    calls: int,
    texts: list[str],
    meter: Meter,
) -> Phase:
    phase = Phase()

    async def work(index: int, line: StartLine) -> None:
        async with (
            httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http,
            Client(streamable_http_client(endpoint, http_client=http), mode=mode) as client,
        ):
            await client.list_tools()  # the SDK does it before a first call: not timed
            await line.ready()
            for k in range(calls):
                query = texts[(index * calls + k) % len(texts)]
                began = time.perf_counter()
                result = await client.call_tool(
                    "search_interactions", {"user_id": USER, "query": query, "top_k": TOP_K}
                )
                phase.latencies_ms.append((time.perf_counter() - began) * 1000)
                phase.errors += bool(result.is_error)
            line.done()

    line = StartLine(clients, meter)
    await line.run(work)
    return line.recorded(phase)


# -- the run -----------------------------------------------------------------------------


@dataclass
class Setup:
    server: RunningServer
    stateless: HttpBridge
    stateful: HttpBridge

    def meter(self, bridge: HttpBridge) -> Meter:
        return Meter({"Reflexio": self.server.process.pid, "bridge": bridge.process.pid})


async def measure(
    setup: Setup, clients: int, calls: int, rounds: int, texts: list[str]
) -> dict[Route, Totals]:
    totals: dict[Route, Totals] = {path: Totals() for path in ROUTES}
    for text in texts:
        search_body(text)  # the direct path's bodies, built before any clock starts

    async def once(path: Route, clients: int, calls: int) -> Phase:
        if path == "direct":
            meter = setup.meter(setup.stateless)  # idle: a baseline for the column
            post = direct_post(setup.server.url)
            return await plain_phase(path, post, clients, calls, texts, meter)
        if path == "bridge, stateless, plain client":
            meter = setup.meter(setup.stateless)
            post = json_rpc_post(setup.stateless.endpoint)
            return await plain_phase(path, post, clients, calls, texts, meter)
        if path == "bridge, stateless":
            meter = setup.meter(setup.stateless)
            endpoint = setup.stateless.endpoint
            return await bridge_phase(endpoint, "auto", clients, calls, texts, meter)
        meter = setup.meter(setup.stateful)
        endpoint = setup.stateful.endpoint  # handshake-era sessions, held by the server
        return await bridge_phase(endpoint, "legacy", clients, calls, texts, meter)

    for path in ROUTES:  # warm up: connections, caches, Reflexio's statement cache
        await once(path, clients, 2)
    for round_ in range(rounds):
        for offset in range(len(ROUTES)):
            path = ROUTES[(round_ + offset) % len(ROUTES)]
            phase = await once(path, clients, calls)
            if setup.server.process.poll() is not None:
                sys.exit(
                    f"Reflexio exited ({setup.server.process.returncode}) during {path}; its "
                    f"log ends:\n{setup.server.log_tail(40)}"
                )
            totals[path].phases.append(phase)
            rate = len(phase.latencies_ms) / phase.seconds
            print(f"  round {round_ + 1}/{rounds} {path}: {rate:.0f} calls/s", file=sys.stderr)
    return totals


def table(title: str, totals: dict[Route, Totals], processes: list[str]) -> None:
    direct = totals["direct"]
    print(title)
    cpu_heads = " | ".join(f"CPU ms/call {name}" for name in processes)
    heads = "path | calls | errors | calls/s | vs direct | p50 ms | p99 ms | added p99 ms"
    print(f"| {heads} | {cpu_heads} |")
    print("|---" * (8 + len(processes)) + "|")
    for path, total in totals.items():
        ratio = total.throughput / direct.throughput
        added = total.percentile(0.99) - direct.percentile(0.99)
        cpu = " | ".join(f"{total.cpu_ms_per_call(name):.2f}" for name in processes)
        print(
            f"| {path} | {total.calls} | {total.errors} | {total.throughput:.0f} | "
            f"{ratio:.2f}x | {total.percentile(0.5):.1f} | {total.percentile(0.99):.1f} | "
            f"{'-' if path == 'direct' else f'{added:+.1f}'} | {cpu} |"
        )


def verdicts(totals: dict[Route, Totals]) -> None:
    direct = totals["direct"]
    for path in ROUTES[1:]:
        total = totals[path]
        ratio = total.throughput / direct.throughput
        added = total.percentile(0.99) - direct.percentile(0.99)
        print(
            f"{path}: throughput {ratio:.2f}x direct (target >= {TARGET_RATIO}: "
            f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}); added p99 {added:+.1f} ms "
            f"(target <= {TARGET_ADDED_P99_MS:g}: "
            f"{'met' if added <= TARGET_ADDED_P99_MS else 'MISSED'})"
        )


def machine() -> str:
    """The machine a run measured, and how busy it was when the run began."""
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; load "
        f"average before {os.getloadavg()[0]:.2f}"
    )


async def main(arguments: argparse.Namespace) -> None:
    texts = queries(997)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work:
        base = Path(work)
        with reflexio_server(base / "reflexio") as server:
            async with ReflexioApi(server.url, timeout=600) as reflexio:
                for request in seed_requests(arguments.seed_turns):
                    await reflexio.publish(request, wait_for_response=False)
            await settle(server.process.pid)
            env = {
                "REFLEXIO_URL": server.url,
                "REFLEXIO_MCP_RATE_LIMIT": "0",  # else 600 requests a minute per caller
                "REFLEXIO_MCP_LOG_LEVEL": arguments.bridge_log_level,
            }
            with (
                http_bridge(base / "stateless", "--stateless", env=env) as stateless,
                http_bridge(base / "stateful", env=env) as stateful,
            ):
                setup = Setup(server, stateless, stateful)
                totals = await measure(
                    setup, arguments.clients, arguments.calls, arguments.rounds, texts
                )
                serial = await measure(setup, 1, arguments.serial_calls, 1, texts)
    processes = ["Reflexio", "bridge", "bench client"]
    print(
        f"search_interactions (top_k={TOP_K}, hybrid: Reflexio falls back to FTS) over "
        f"{arguments.seed_turns} turns of one user; reflexio-mcp log level "
        f"{arguments.bridge_log_level}"
    )
    table(
        f"\n{arguments.clients} concurrent clients x {arguments.calls} calls, {arguments.rounds} "
        "rounds, paths interleaved:",
        totals,
        processes,
    )
    print()
    verdicts(totals)
    table(f"\n1 client x {arguments.serial_calls} calls (no queueing):", serial, processes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="reflexio-mcp over HTTP vs Reflexio directly")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20, help="per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed-turns", type=int, default=1000)
    parser.add_argument("--serial-calls", type=int, default=200)
    parser.add_argument("--bridge-log-level", default="INFO", help="reflexio-mcp's (default INFO)")
    anyio.run(main, parser.parse_args())
