"""Benchmark: what the outbox costs a publish, and what it gives when Reflexio is down.

    uv run python bench/publish_latency.py [--publishes 300]

Against a local Reflexio 0.2.32 (rate limiter off), through the Backend protocol (what the
publish tool calls), in one run:
- direct: ReflexioApi.publish, no outbox (the baseline);
- journaled: ReflexioBackend.publish, each publish written to outbox.sqlite3 (WAL,
  synchronous=FULL) before it is sent, then marked delivered;
- Reflexio down (killed): ReflexioBackend.publish answers `queued`;
- drain: Reflexio started again, the time until the outbox has delivered them all.
Prints one table; the ratio column is against the direct publish of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.durable import ReflexioBackend
from reflexio_mcp.backends.reflexio.outbox import Outbox
from reflexio_mcp.core.models import InteractionData, PublishRequest
from tests.support.reflexio_server import kill9, reflexio_server, restart


def requests(count: int) -> list[PublishRequest]:
    return [
        PublishRequest(
            request_id=str(uuid.uuid4()),
            user_id="bench-user",
            session_id="bench-session",
            interaction_data_list=[
                InteractionData(role="user", content=f"question {n} about the invoice"),
                InteractionData(role="assistant", content=f"answer {n}: it was sent on Monday"),
            ],
        )
        for n in range(count)
    ]


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    seconds: list[float] = []
    for call in calls:
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return seconds


def p50_p99(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


async def main(count: int) -> None:
    rows: dict[str, tuple[float, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work,
        reflexio_server(Path(work) / "reflexio") as server,
    ):
        async with ReflexioApi(server.url) as client:
            rows["direct (no outbox)"] = p50_p99(
                await timed(
                    [
                        lambda r=r: client.publish(r, wait_for_response=False)
                        for r in requests(count)
                    ]
                )
            )
        client = ReflexioApi(server.url, max_retries=0)
        outbox = Outbox(Path(work) / "data", client.url)
        async with ReflexioBackend(client, outbox, publish_rate=0, timeout=5) as durable:
            rows["journaled, Reflexio up"] = p50_p99(
                await timed(
                    [
                        lambda r=r: durable.publish(r, wait_for_response=False)
                        for r in requests(count)
                    ]
                )
            )
            kill9(server)
            rows["journaled, Reflexio down (queued)"] = p50_p99(
                await timed(
                    [
                        lambda r=r: durable.publish(r, wait_for_response=False)
                        for r in requests(count)
                    ]
                )
            )
            waiting = (await outbox.stats()).waiting
            await anyio.to_thread.run_sync(restart, server)
            started = time.perf_counter()
            while (await outbox.stats()).waiting:  # noqa: ASYNC110  polls another task's work
                await anyio.sleep(0.01)
            drain = time.perf_counter() - started
    base = rows["direct (no outbox)"][0]
    print(f"{count} publishes of one exchange each; ms, p50 / p99")
    print("| publish | p50 / p99 | p50 / direct p50 |")
    print("|---|---|---|")
    for name, (p50, p99) in rows.items():
        print(f"| {name} | {p50:.2f} / {p99:.2f} | {p50 / base:.2f}x |")
    print(
        f"| drain of {waiting} queued after Reflexio restarts (from healthy) | "
        f"{drain:.2f} s ({waiting / drain:.0f} publishes/s) | - |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Publish latency with and without the outbox")
    parser.add_argument("--publishes", type=int, default=300)
    anyio.run(main, parser.parse_args().publishes)
