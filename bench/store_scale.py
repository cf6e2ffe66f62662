"""Benchmark: how the embedded store's costs grow with its size, up to 1,000,000 interactions.

    uv run python bench/store_scale.py [--sizes 10000,100000,210000,1000000] [--queries 200]

Grows one store from the smallest size to the largest and measures at each size. Half of the
interactions belong to one heavy user ("bench-user", whom the searches and gets are for); the
other half are spread over 200 other users (one of them, "user-007", is the light user of two
rows). Seeded through the store's own publish path, as clients send: each publish is one
session's 1 to 10 exchanges (2 to 20 turns), of one user. The text is search_latency's
synthetic conversations (a tenth of the turns with Japanese, Chinese or Korean text), so the
100,000 column compares with its table. At each size, through the Backend protocol (what the
tools call): publishes of one exchange, word and CJK searches (sent through `bounded_query` as
the search tool sends them; top_k=10, fts), get, the sessions page, user id completion and
status; then the light user's get and searches again while the heavy user runs 6 searches of
a frequent word at once, over and over (issue 16 item 7); then the file's size. Reads keep the
store's own 5 s limit: a stopped one is counted.

Searches by meaning (hybrid, the default, and vector) at each size: the store is grown words
only (`EmbeddingChoice(enabled=False)`, nothing embedded while seeding: the real model embeds
15-25 turns a second, a day for 1,000,000), then every turn without a vector is given a random
unit vector (encoded as the indexer encodes, `vectors.encoded`, and written straight into
turn_vectors with its user's user_key), and the searches are timed through a second store on
the same file opened with the model on, which embeds each query for real: each kind asks
its own questions ("What did we say about" and 4-10 of the turns' words), none asked
twice, so none is answered from the store's cache of recent query vectors. The vectors mean
nothing, and need not: a search's cost (embedding the query, scanning all of the user's
vectors, fusing with the words' ranking) does not depend on what they mean, only on how many
there are. (Random vectors' cosines sit near 0, under hybrid's meaning floor, so hybrid's
fusion here has the words' candidates only; it is cheap beside the scan.)

Prints one table (rows: metrics; columns: sizes), the seeding wall time, item 7's targets at
the largest size, and issue 18's (hybrid search p99 <= 50 ms at 100,000 turns of one user) at
the first size where the heavy user holds 100,000 turns (she holds about half of a size's: 99,508
of 200,000, hence 210,000 among the default sizes), met or missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import anyio

# The server's numpy loads after the embedder has set this (embedder.py), so its OpenBLAS
# scans vectors in one thread; here fill_vectors loads numpy first. Two threads on a busy
# 2-core machine made a 5,000-vector scan 8 ms instead of 0.7.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.search_latency import CJK_SHARE, CJK_WORDS, cjk_sentence, queries, sentence, vocabulary
from reflexio_mcp.backends.embedded.embedder import DIMENSIONS, EmbeddingChoice
from reflexio_mcp.backends.embedded.indexer import RECIPE
from reflexio_mcp.backends.embedded.indexer import (
    _pending as indexer_look,  # pyright: ignore[reportPrivateUsage]
)
from reflexio_mcp.backends.embedded.schema import FILE_NAME
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.embedded.vectors import encoded
from reflexio_mcp.core.errors import SearchTooSlow
from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.models import (
    GetRequest,
    InteractionData,
    Matches,
    PublishRequest,
    SearchRequest,
)
from reflexio_mcp.core.search_text import bounded_query

HEAVY = "bench-user"
LIGHT = "user-007"
OTHER_USERS = 200
HEAVY_SHARE = 0.5
MAX_EXCHANGES = 10
EXCHANGES_PER_SESSION = 30
"""A user's session changes after about this many exchanges."""
PROBE_PUBLISHES = 200
"""Timed publishes of one exchange at each size (counted in the size)."""
SLOW_CALLS = 20
"""Calls of each kind that read a whole index or table (frequent words, status...)."""
FREQUENT = 3
"""The searched frequent words: the first of the Zipf list, each in most turns (like 'the')."""
HEAVY_SEARCHES = 6
"""The heavy user's searches running at once while the light user's calls are timed."""
LIGHT_SEARCH_P99_MS = 50.0
LIGHT_GET_P99_MS = 10.0
LOADED_GET_P50_MS = 50.0
"""Issue 16 item 7, at the largest size: the light user's search and get p99, and while the
heavy user runs 6 searches, her get p50 (and every search of hers answered)."""
UNDER_LOAD = ", heavy user running 6 searches"
ONE_USER_TURNS = 100_000
HYBRID_P99_MS = 50.0
"""Issue 18: hybrid search p99 at 100,000 turns of one user."""
HYBRID = "search hybrid (default), a new question"
VECTOR = "search vector, a new question"
QUESTION_WORDS = (4, 10)
"""Words of a meaning search's question: LoCoMo's are 5-20 words, 15 tokens on average."""
FILL_ROWS = 50_000
"""Synthetic vectors made and written at a time (a float32 copy of 50,000 is 77 MB)."""
SETTLE_SECONDS = 1.0
LOOK = "indexer's look for turns without a vector, none missing (ms)"
"""The query the indexer runs after embedding a publish's turns, and at open: with nothing
missing it reads every turn of the store."""
Call = Callable[[], Awaitable[object]]


class Conversations:
    """The synthetic publishes, made one at a time (1,000,000 turns would not fit in memory
    as models): search_latency's sentences, over one heavy user and many light ones."""

    def __init__(self, seed: int, start: int) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(self.rng)
        self.rng.shuffle(self.words)
        self.clock = start
        self.exchanges: dict[str, int] = {}

    def user(self) -> str:
        if self.rng.random() < HEAVY_SHARE:
            return HEAVY
        return f"user-{self.rng.randrange(OTHER_USERS):03d}"

    def publish(self, user: str, turns: int) -> PublishRequest:
        done = self.exchanges.get(user, 0)
        self.exchanges[user] = done + turns // 2
        data = [
            InteractionData(
                role="user" if n % 2 == 0 else "assistant",
                content=sentence(self.rng, self.words) + cjk_sentence(self.rng),
                created_at=self.clock + n,
            )
            for n in range(turns)
        ]
        self.clock += turns
        return PublishRequest(
            request_id=str(uuid.uuid4()),
            user_id=user,
            session_id=f"session-{done // EXCHANGES_PER_SESSION}",
            interaction_data_list=data,
            source="bench",
        )


async def grow(store: EmbeddedStore, conversations: Conversations, count: int) -> float:
    """Publish `count` more turns as clients do; return the seconds spent in publish."""
    spent = 0.0
    while count > 0:
        turns = min(count, 2 * conversations.rng.randint(1, MAX_EXCHANGES))
        request = conversations.publish(conversations.user(), turns)
        started = time.perf_counter()
        answer = await store.publish(request, wait_for_response=False)
        spent += time.perf_counter() - started
        assert not answer.already_stored, answer.message
        count -= turns
    return spent


async def latencies(calls: Sequence[Call]) -> str:
    """p50 / p99 in ms, and how many were stopped at the store's read time limit."""
    return cell(await timed(calls))


async def timed(calls: Sequence[Call]) -> tuple[list[float], int]:
    """Each call's ms, in order of size, and how many were stopped at the read time limit."""
    timings: list[float] = []
    stopped = 0
    for call in calls:
        started = time.perf_counter()
        try:
            await call()
        except SearchTooSlow:
            stopped += 1
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return timings, stopped


def p99(timings: list[float]) -> float:
    return timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))]


def cell(measured: tuple[list[float], int]) -> str:
    timings, stopped = measured
    text = f"{statistics.median(timings):.2f} / {p99(timings):.2f}"
    return f"{text} ({stopped}/{len(timings)} stopped at 5 s)" if stopped else text


async def under_load(heavy: Sequence[Call], calls: Sequence[Call]) -> tuple[list[float], int]:
    """`calls` timed while each of `heavy` runs over and over, all at once."""

    async def repeat(call: Call) -> None:
        while True:
            with contextlib.suppress(SearchTooSlow):
                await call()

    measured: tuple[list[float], int] = ([], 0)
    async with anyio.create_task_group() as group:
        for call in heavy:
            group.start_soon(repeat, call)
        await anyio.wait_all_tasks_blocked()  # each is reading, or waiting to
        measured = await timed(calls)
        group.cancel_scope.cancel()
    return measured


def searcher(store: EmbeddedStore, mode: SearchMode, user: str, query: str) -> Call:
    sent, _ = bounded_query(query)  # what search_interactions sends, as the tool does
    request = SearchRequest(user_id=user, query=sent, top_k=10, search_mode=mode)
    return partial(store.search_interactions, request)


async def measure(
    store: EmbeddedStore, conversations: Conversations, texts: list[str]
) -> tuple[dict[str, str], dict[str, tuple[list[float], int]]]:
    """The column of one size, and the light user's timings (for the targets)."""

    search = partial(searcher, store, "fts")
    rng = random.Random(11)
    frequent = [conversations.words[n % FREQUENT] for n in range(SLOW_CALLS)]
    widest = " ".join(rng.sample(conversations.words[:200], 40))
    probes = [
        partial(store.publish, conversations.publish(HEAVY, 2), wait_for_response=False)
        for _ in range(PROBE_PUBLISHES)
    ]
    row = {"publish 1 exchange (2 turns)": await latencies(probes)}
    calls: dict[str, list[Call]] = {
        "search 1-2 words (search_latency's mix)": [search(HEAVY, q) for q in texts],
        "search 1 frequent word (in most turns)": [search(HEAVY, w) for w in frequent],
        "search CJK (2 characters)": [search(HEAVY, rng.choice(CJK_WORDS)) for _ in texts],
        "search 40 frequent-ish words (32 searched)": [search(HEAVY, widest)] * SLOW_CALLS,
        "search 1-2 words, light user": [search(LIGHT, q) for q in texts],
        "search 1 frequent word, light user": [search(LIGHT, w) for w in frequent],
        "get newest 30": [partial(store.get_interactions, GetRequest(user_id=HEAVY))] * len(texts),
        "get newest 30, light user": [partial(store.get_interactions, GetRequest(user_id=LIGHT))]
        * len(texts),
        "sessions page (20)": [partial(store.sessions, HEAVY, offset=0, limit=20)] * SLOW_CALLS,
        "user id completion (prefix 'user-0')": [partial(store.user_ids, "user-0", 20)]
        * SLOW_CALLS,
        "status": [partial(store.status, HEAVY)] * SLOW_CALLS,
    }
    light: dict[str, tuple[list[float], int]] = {}
    for name, kind in calls.items():
        with contextlib.suppress(SearchTooSlow):  # counted below, when timed
            await kind[0]()  # warm caches once for each kind
        measured = await timed(kind)
        row[name] = cell(measured)
        if "light user" in name:
            light[name] = measured
    heavy = [search(HEAVY, frequent[n % FREQUENT]) for n in range(HEAVY_SEARCHES)]
    for name in list(light):
        loaded = name + UNDER_LOAD
        light[loaded] = await under_load(heavy, calls[name])
        row[loaded] = cell(light[loaded])
    status = await store.status(HEAVY)
    row["status says: heavy user / all / users"] = (
        f"{status.user_interactions:,} / {status.interactions:,} / {status.users}"
    )
    return row, light


def fill_vectors(folder: Path, seed: int) -> tuple[int, float]:
    """Give every turn without a vector of the indexer's recipe a random unit vector, as the
    indexer would store a real one (so it has nothing to embed again); return how many were
    made and the seconds the indexer's own look for missing vectors takes now (it makes that
    look when a store opens)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    made = 0
    missing = (
        "SELECT i.interaction_id, k.user_key FROM interactions i "
        "JOIN user_keys k ON k.user_id = i.user_id WHERE NOT EXISTS "
        "(SELECT 1 FROM turn_vectors v WHERE v.interaction_id = i.interaction_id AND "
        "v.recipe = ?)"
    )
    with contextlib.closing(sqlite3.connect(folder / FILE_NAME, timeout=30)) as db:
        turns = db.execute(f"{missing} ORDER BY i.interaction_id", (RECIPE,)).fetchall()
        for start in range(0, len(turns), FILL_ROWS):
            chunk = turns[start : start + FILL_ROWS]
            vectors = rng.standard_normal((len(chunk), DIMENSIONS), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO turn_vectors "
                    "(interaction_id, user_key, vector, recipe) VALUES (?, ?, ?, ?)",
                    [
                        (rowid, user_key, blob, RECIPE)
                        for (rowid, user_key), blob in zip(chunk, encoded(vectors), strict=True)
                    ],
                )
            made += len(chunk)
        started = time.perf_counter()
        left = indexer_look(db, above=0, below=2**63 - 1)
        look = time.perf_counter() - started
    assert not left, f"{len(left)} turns still without a vector"
    return made, look


def new_questions(count: int, seed: int, words: list[str]) -> list[list[str]]:
    """`count` questions for each meaning search kind, of the stored turns' `words`, no two
    alike: the store keeps the vectors of its latest queries, and a repeated one would skip
    the embedding that is most of a meaning search's cost."""
    rng = random.Random(seed)
    made: set[str] = set()
    while len(made) < 3 * count:
        picked = rng.sample(words, rng.randint(*QUESTION_WORDS))
        made.add(f"What did we say about {' '.join(picked)}?")
    texts = sorted(made)
    rng.shuffle(texts)
    return [texts[n::3] for n in range(3)]


async def measure_meaning(
    folder: Path, questions: list[list[str]], look_seconds: float
) -> dict[str, tuple[list[float], int]]:
    """Hybrid and vector searches through a store on the same file with the model on, each
    question asked once."""
    async with EmbeddedStore(folder, embedding=EmbeddingChoice()) as store:
        # Its indexer looks for turns without a vector at open, finds none, and stops: let
        # that look end before timing (it reads the whole table).
        await anyio.sleep(SETTLE_SECONDS + 3 * look_seconds)
        calls: dict[str, list[Call]] = {
            HYBRID: [searcher(store, "hybrid", HEAVY, q) for q in questions[0]],
            VECTOR: [searcher(store, "vector", HEAVY, q) for q in questions[1]],
            f"{HYBRID}, light user": [searcher(store, "hybrid", LIGHT, q) for q in questions[2]],
        }
        measured: dict[str, tuple[list[float], int]] = {}
        for name, kind in calls.items():
            answer = await kind[0]()  # loads the model (the first time), reads the vectors
            assert isinstance(answer, Matches), answer
            assert answer.search_mode != "fts", answer.notes
            measured[name] = await timed(kind[1:])
        status = await store.status(HEAVY)
        meaning = status.meaning_index
        assert meaning is not None, status
        assert not meaning.unavailable, meaning.unavailable
    return measured


def file_sizes(folder: Path) -> str:
    sizes = [(folder / f"{FILE_NAME}{suffix}") for suffix in ("", "-wal")]
    main, wal = (path.stat().st_size / 2**20 if path.exists() else 0.0 for path in sizes)
    return f"{main:,.0f} + {wal:,.1f}"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


async def main(sizes: list[int], query_count: int) -> None:
    texts = queries(query_count, seed=7)
    conversations = Conversations(seed=7, start=int(time.time()) - 2 * sizes[-1])
    columns: list[dict[str, str]] = []
    light: dict[str, tuple[list[float], int]] = {}
    one_user: tuple[int, int, tuple[list[float], int]] | None = None
    load = os.getloadavg()[0]
    stored = 0
    seeding = 0.0
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work:
        folder = Path(work) / "embedded"
        async with EmbeddedStore(folder, embedding=EmbeddingChoice(enabled=False)) as store:
            for size in sizes:
                started = time.perf_counter()
                count = size - stored - 2 * PROBE_PUBLISHES  # the probes bring it to `size`
                spent = await grow(store, conversations, count)
                seeding += time.perf_counter() - started
                column = {
                    "seed publishes (interactions/s, this step)": f"{count / spent:,.0f}",
                    "seeded so far (wall, min:s)": minutes(seeding),
                }
                measured, light = await measure(store, conversations, texts)
                column |= measured
                started = time.perf_counter()
                made, look = fill_vectors(folder, seed=size)
                column["synthetic vectors written (this step, s)"] = (
                    f"{made:,} ({time.perf_counter() - started:.1f})"
                )
                column[LOOK] = f"{look * 1000:,.0f}"
                meaning = await measure_meaning(
                    folder, new_questions(query_count, size, conversations.words), look
                )
                column |= {name: cell(timings) for name, timings in meaning.items()}
                heavy_turns = (await store.status(HEAVY)).user_interactions or 0
                if one_user is None and heavy_turns >= ONE_USER_TURNS:
                    one_user = (size, heavy_turns, meaning[HYBRID])
                column["file, main + -wal (MiB)"] = file_sizes(folder)
                columns.append(column)
                stored = size
                print(f"measured at {size:,} (seeding {minutes(seeding)})", file=sys.stderr)

    print(
        f"One store grown to {', '.join(f'{s:,}' for s in sizes)} interactions: half of one "
        f"heavy user, half over {OTHER_USERS} others ({CJK_SHARE:.0%} of turns with CJK "
        f"text); {query_count} searches of each word and CJK kind, {SLOW_CALLS} of the whole-"
        f"index ones; times in ms, p50 / p99; {platform.machine()}, {os.cpu_count()} cores, "
        f"load {load:.1f} at start; Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}"
    )
    print(f"| metric | {' | '.join(f'{s:,}' for s in sizes)} |")
    print(f"|---|{'---|' * len(sizes)}")
    for name in columns[0]:
        print(f"| {name} | {' | '.join(column[name] for column in columns)} |")
    print(f"\nSeeding wall time (making the turns and publishing them): {minutes(seeding)}")
    print(f"\nIssue 16 item 7 at {sizes[-1]:,} (the light user, {LIGHT}):")
    print("| target | measured (ms) | |\n|---|---|---|")
    for name, (timings, stopped) in light.items():
        if not name.endswith(UNDER_LOAD):
            limit = LIGHT_GET_P99_MS if name.startswith("get") else LIGHT_SEARCH_P99_MS
            target, value = f"{name}: p99 <= {limit:g} ms", p99(timings)
        elif name.startswith("get"):
            limit, target = LOADED_GET_P50_MS, f"{name}: p50 <= {LOADED_GET_P50_MS:g} ms"
            value = statistics.median(timings)
        else:
            limit, target = float("inf"), f"{name}: every one answered"
            value = p99(timings)
        met = "met" if value <= limit and not stopped else "missed"
        answered = f" ({stopped} stopped)" if stopped else ""
        print(f"| {target} | {value:.2f}{answered} | {met} |")
    print(f"\nIssue 18 at {ONE_USER_TURNS:,} turns of one user (the heavy user, {HEAVY}):")
    if one_user is None:
        print(
            f"not measured: no size gave her {ONE_USER_TURNS:,} turns (she holds half of a "
            f"size's: add --sizes ...,{2.1 * ONE_USER_TURNS:.0f})"
        )
    else:
        size, heavy_turns, (timings, stopped) = one_user
        met = "met" if p99(timings) <= HYBRID_P99_MS and not stopped else "missed"
        answered = f" ({stopped} stopped)" if stopped else ""
        print("| target | measured (ms) | |\n|---|---|---|")
        print(
            f"| {HYBRID} at {size:,} ({heavy_turns:,} of hers): p99 <= {HYBRID_P99_MS:g} ms "
            f"| {p99(timings):.2f}{answered} | {met} |"
        )


def size_list(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",")]
    if sizes != sorted(set(sizes)) or sizes[0] <= 2 * PROBE_PUBLISHES:
        raise argparse.ArgumentTypeError(
            f"sizes must grow, each above {2 * PROBE_PUBLISHES}: {text}"
        )
    return sizes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Embedded store: costs as it grows")
    parser.add_argument("--sizes", type=size_list, default=size_list("10000,100000,210000,1000000"))
    parser.add_argument("--queries", type=int, default=200)
    arguments = parser.parse_args()
    anyio.run(main, arguments.sizes, arguments.queries)
