"""Benchmark: the embedded store against Reflexio 0.2.32 on the same 100,000 interactions.

    uv run python bench/search_latency.py [--interactions 100000] [--queries 200]

Seeds the same synthetic conversations into both backends (one user: the heavy-user case),
then times search_interactions and get_interactions through the Backend protocol (what the
tools call) on the same queries, in one run, and prints a table. Reflexio runs locally, from
the same cached venv the tests use, with its rate limiter off.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reflexio_mcp.backend import Backend
from reflexio_mcp.embedded_store import FILE_NAME, EmbeddedStore
from reflexio_mcp.models import (
    GetRequest,
    InteractionData,
    PublishRequest,
    SearchRequest,
)
from reflexio_mcp.reflexio_client import ReflexioClient
from tests.reflexio_server import reflexio_server

USER = "bench-user"
BATCH = 1000
WORDS = [
    "order", "refund", "shipping", "invoice", "password", "login", "account", "deploy", "server",
    "database", "query", "index", "latency", "timeout", "retry", "billing", "subscription",
    "upgrade", "bug", "crash", "memory", "profile", "playbook", "agent", "customer", "ticket",
    "warranty", "replacement", "screen", "battery", "delivery", "address", "schedule", "meeting",
    "calendar", "budget", "report", "export", "import", "backup", "restore", "cluster", "token",
    "permission", "error", "warning", "search", "filter", "sort", "cache",
]  # fmt: skip


def vocabulary(rng: random.Random) -> list[str]:
    """The common words above plus 5,000 rarer made-up ones, so queries hit a realistic mix."""
    syllables = ["ka", "lo", "mi", "ren", "tu", "sha", "vo", "pel", "dri", "xan", "qua", "zo"]
    rare = {"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(6000)}
    return WORDS + sorted(rare)[:5000]


def sentence(rng: random.Random, words: list[str]) -> str:
    # Zipf-like: common words far more often than rare ones.
    picks = [
        words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)]
        for _ in range(rng.randint(12, 40))
    ]
    return " ".join(picks).capitalize() + "."


def batches(total: int, seed: int) -> list[PublishRequest]:
    rng = random.Random(seed)
    words = vocabulary(rng)
    rng.shuffle(words)
    start = int(time.time()) - total
    requests: list[PublishRequest] = []
    for offset in range(0, total, BATCH):
        turns = [
            InteractionData(
                role="user" if (offset + n) % 2 == 0 else "assistant",
                content=sentence(rng, words),
                created_at=start + offset + n,
            )
            for n in range(min(BATCH, total - offset))
        ]
        requests.append(
            PublishRequest(
                request_id=str(uuid.uuid4()),
                user_id=USER,
                session_id="bench",
                interaction_data_list=turns,
                source="bench",
            )
        )
    return requests


def queries(count: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    words = vocabulary(random.Random(seed))
    common = [rng.sample(WORDS, rng.choice((1, 2))) for _ in range(count)]
    rare = [rng.sample(words[50:], 1) for _ in range(count)]
    return [" ".join(common[n] if n % 2 else rare[n]) for n in range(count)]


async def seed(backend: Backend, requests: list[PublishRequest]) -> float:
    """Publish every batch; return interactions per second."""
    started = time.perf_counter()
    for request in requests:
        answer = await backend.publish(request, wait_for_response=False)
        assert not answer.already_stored, answer.message
    elapsed = time.perf_counter() - started
    return sum(len(r.interaction_data_list) for r in requests) / elapsed


async def latencies(calls: Sequence[Callable[[], Awaitable[object]]]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    timings: list[float] = []
    for call in calls:
        started = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))]
    return statistics.median(timings), p99


async def measure(backend: Backend, texts: list[str], gets: int) -> dict[str, tuple[float, float]]:
    requests = [SearchRequest(user_id=USER, query=q, top_k=10, search_mode="fts") for q in texts]
    search = [partial(backend.search_interactions, request) for request in requests]
    newest = [partial(backend.get_interactions, GetRequest(user_id=USER, top_k=30))] * gets
    await search[0]()  # warm caches once, for both alike
    return {"search p50/p99 ms": await latencies(search), "get p50/p99 ms": await latencies(newest)}


async def main(total: int, query_count: int, reflexio_gets: int) -> None:
    requests = batches(total, seed=7)
    texts = queries(query_count, seed=7)
    rows: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work:
        async with EmbeddedStore(Path(work) / "embedded") as store:
            rate = await seed(store, requests)
            results = await measure(store, texts, gets=query_count)
        db = Path(work) / "embedded" / FILE_NAME
        size = sum(p.stat().st_size for p in db.parent.glob(f"{FILE_NAME}*"))
        rows["embedded"] = _row(results, rate, f"{size / 2**20 * 100_000 / total:.0f} MiB")

        with reflexio_server(Path(work) / "reflexio") as server:
            async with ReflexioClient(server.url, timeout=600) as reflexio:
                rate = await seed(reflexio, requests)
                results = await measure(reflexio, texts, gets=reflexio_gets)
        rows["Reflexio 0.2.32"] = _row(results, rate, "-")

    embedded, remote = rows["embedded"], rows["Reflexio 0.2.32"]
    speedup = float(remote["_search_p50"]) / float(embedded["_search_p50"])
    columns = ["search p50/p99 ms", "get p50/p99 ms", "publish interactions/s", "file per 100k"]
    print(f"{total:,} interactions, one user; {query_count} searches (top_k=10, fts)")
    print(f"| backend | {' | '.join(columns)} |")
    print(f"|---|{'---|' * len(columns)}")
    for name, row in rows.items():
        print(f"| {name} | {' | '.join(row[c] for c in columns)} |")
    print(f"embedded search p50 is {speedup:.0f}x faster than Reflexio's")


def _row(results: dict[str, tuple[float, float]], rate: float, size: str) -> dict[str, str]:
    row = {name: f"{p50:.2f} / {p99:.2f}" for name, (p50, p99) in results.items()}
    row["_search_p50"] = f"{results['search p50/p99 ms'][0]:.4f}"
    row["publish interactions/s"] = f"{rate:,.0f}"
    row["file per 100k"] = size
    return row


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Embedded store vs Reflexio: latency table")
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reflexio-gets", type=int, default=20, help="Reflexio's get is slow")
    arguments = parser.parse_args()
    anyio.run(main, arguments.interactions, arguments.queries, arguments.reflexio_gets)
