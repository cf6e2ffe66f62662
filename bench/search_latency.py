"""Benchmark: the embedded store against Reflexio 0.2.32 on the same 100,000 interactions.

    uv run python bench/search_latency.py [--interactions 100000] [--queries 200]

Seeds the same synthetic conversations (a tenth of them with Japanese, Chinese or Korean
text) into both backends, for one user (the heavy-user case), then times through the Backend
protocol (what the tools call), in one run: word and CJK searches, the pathological queries
(one word repeated 5,000 times; 40 common words), get, delete and status. Queries go through
`bounded_query` as the search tool sends them. Reflexio runs locally, from the same cached
venv the tests use, with its rate limiter off. Prints one table.
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

from reflexio_mcp.backends.embedded.schema import FILE_NAME
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.models import GetRequest, InteractionData, PublishRequest, SearchRequest
from reflexio_mcp.core.search_text import bounded_query
from tests.support.reflexio_server import reflexio_server

USER = "bench-user"
BATCH = 1000
PATHOLOGICAL_CALLS = 20
STATUS_CALLS = 20
CJK_SHARE = 0.1
CJK_WORDS = [
    "寿司", "東京", "会議", "請求書", "配送", "返金", "予約", "天気", "注文", "北京", "烤鸭",
    "电脑", "手机", "银行", "서울", "비빔밥", "회의", "배송", "환불", "주문",
]  # fmt: skip
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


def cjk_sentence(rng: random.Random) -> str:
    """For a share of turns, CJK words run together (no spaces), as Japanese and Chinese are."""
    if rng.random() >= CJK_SHARE:
        return ""
    return (
        " " + "".join(rng.choice(CJK_WORDS) + rng.choice("をにでの的了") for _ in range(8)) + "。"
    )


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
                content=sentence(rng, words) + cjk_sentence(rng),
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


async def measure(
    backend: Backend, texts: list[str], gets: int, deletes: list[int]
) -> dict[str, tuple[float, float]]:
    def search(query: str) -> Callable[[], Awaitable[object]]:
        sent, _ = bounded_query(query)  # what search_interactions sends, as the tool does
        request = SearchRequest(user_id=USER, query=sent, top_k=10, search_mode="fts")
        return partial(backend.search_interactions, request)

    rng = random.Random(11)
    words = [search(q) for q in texts]
    cjk = [search(rng.choice(CJK_WORDS)) for _ in texts]
    repeated = [search("a " * 5000)] * PATHOLOGICAL_CALLS
    widest = [search(" ".join(rng.sample(WORDS, 40)))] * PATHOLOGICAL_CALLS
    newest = [partial(backend.get_interactions, GetRequest(user_id=USER, top_k=30))] * gets
    delete = [partial(backend.delete_interaction, USER, i) for i in deletes]
    status = [partial(backend.status, USER)] * STATUS_CALLS
    await words[0]()  # warm caches once, for both alike
    return {
        "search (1-2 words)": await latencies(words),
        "search CJK (2 characters)": await latencies(cjk),
        'search "a " x 5000': await latencies(repeated),
        "search 40 common words": await latencies(widest),
        "get newest 30": await latencies(newest),
        "delete (half recent, half anywhere)": await latencies(delete),
        "status": await latencies(status),
    }


async def targets(backend: Backend, count: int) -> list[int]:
    """Ids to delete: half among the newest 100, half anywhere in the history."""
    ids = sorted(
        i.interaction_id
        for i in await backend.get_interactions(GetRequest(user_id=USER, top_k=1000))
    )
    rng = random.Random(5)
    recent = rng.sample(ids[-100:], count // 2)
    return recent + rng.sample(range(1, ids[-1] - 1000), count - count // 2)


async def run(
    backend: Backend, requests: list[PublishRequest], texts: list[str], gets: int, deletes: int
) -> dict[str, str]:
    rate = await seed(backend, requests)
    results = await measure(backend, texts, gets, await targets(backend, deletes))
    row = {name: f"{p50:.2f} / {p99:.2f}" for name, (p50, p99) in results.items()}
    row["publish (interactions/s)"] = f"{rate:,.0f}"
    return row


async def main(total: int, query_count: int, reflexio_gets: int, deletes: int) -> None:
    requests = batches(total, seed=7)
    texts = queries(query_count, seed=7)
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work:
        async with EmbeddedStore(Path(work) / "embedded") as store:
            embedded = await run(store, requests, texts, query_count, deletes)
        db = Path(work) / "embedded" / FILE_NAME
        size = sum(p.stat().st_size for p in db.parent.glob(f"{FILE_NAME}*"))
        embedded["file per 100k"] = f"{size / 2**20 * 100_000 / total:.0f} MiB"

        with reflexio_server(Path(work) / "reflexio") as server:
            async with ReflexioApi(server.url, timeout=600) as reflexio:
                remote = await run(reflexio, requests, texts, reflexio_gets, deletes)
        remote["file per 100k"] = "-"

    print(
        f"{total:,} interactions of one user ({CJK_SHARE:.0%} with CJK text); {query_count} "
        f"searches (top_k=10, fts); {deletes} deletes; times in ms, p50 / p99"
    )
    print("| operation | embedded | Reflexio 0.2.32 | Reflexio / embedded (p50) |")
    print("|---|---|---|---|")
    for name, mine in embedded.items():
        print(f"| {name} | {mine} | {remote[name]} | {_ratio(remote[name], mine)} |")


def _ratio(remote: str, embedded: str) -> str:
    try:
        high, low = (float(value.split(" / ")[0].replace(",", "")) for value in (remote, embedded))
    except ValueError:
        return "-"
    return f"{high / low:.1f}x" if low else "-"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Embedded store vs Reflexio: latency table")
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reflexio-gets", type=int, default=20, help="Reflexio's get is slow")
    parser.add_argument("--deletes", type=int, default=20)
    arguments = parser.parse_args()
    anyio.run(
        main, arguments.interactions, arguments.queries, arguments.reflexio_gets, arguments.deletes
    )
