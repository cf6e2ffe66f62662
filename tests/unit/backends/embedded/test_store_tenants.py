"""One user's data and reads cannot stall another's in the embedded store: full-text search
ranks within the caller's own rows, and no user takes every reader of the pool."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from reflexio_mcp.backends.embedded.schema import SCHEMA_VERSION, USER_INDEXES
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.embedded.vocabulary import Vocabulary
from reflexio_mcp.backends.sqlite_file import SqliteFile
from reflexio_mcp.core.models import (
    GetRequest,
    Interaction,
    InteractionData,
    PublishRequest,
    SearchRequest,
)
from reflexio_mcp.core.search_text import cjk_grams, cjk_match, word_match
from tests.support.embedded_schema import V2_SCHEMA

HEAVY_TURNS = 30_000
WORDS_PER_TURN = 4


def letters(n: int) -> str:
    """n in base 26, as letters: distinct words for distinct numbers."""
    word = ""
    while True:
        word = chr(ord("a") + n % 26) + word
        n //= 26
        if n == 0:
            return word


def publish(user_id: str, contents: list[str]) -> PublishRequest:
    return PublishRequest(
        request_id=str(uuid.uuid4()),
        user_id=user_id,
        session_id="s",
        interaction_data_list=[InteractionData(content=c) for c in contents],
    )


async def seed_heavy_user(store: EmbeddedStore, user_id: str, turns: int) -> None:
    """`turns` turns of distinct words that all start with "a": a search for "a" expands
    every one of them."""
    for start in range(0, turns, 1000):
        contents = [
            " ".join("a" + letters(n * WORDS_PER_TURN + j) for j in range(WORDS_PER_TURN))
            for n in range(start, min(turns, start + 1000))
        ]
        await store.publish(publish(user_id, contents), wait_for_response=False)


async def test_a_heavy_users_searches_do_not_hold_up_another_users_get_and_search(
    tmp_path: Path,
) -> None:
    finished: list[str] = []
    got: list[Interaction] = []
    found: list[Interaction] = []
    async with EmbeddedStore(tmp_path) as store:
        await seed_heavy_user(store, "heavy", HEAVY_TURNS)
        await store.publish(
            publish("light", ["an apple a day", "nothing here"]), wait_for_response=False
        )

        async def heavy_search() -> None:
            found = (
                await store.search_interactions(SearchRequest(user_id="heavy", query="a", top_k=10))
            ).interactions
            assert len(found) == 10
            finished.append("heavy search")

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for _ in range(6):
                    group.start_soon(heavy_search)
                await anyio.wait_all_tasks_blocked()  # all six are reading or waiting to
                got = await store.get_interactions(GetRequest(user_id="light"))
                finished.append("light get")
                found = (
                    await store.search_interactions(
                        SearchRequest(user_id="light", query="a", top_k=10)
                    )
                ).interactions
                finished.append("light search")
    assert sorted(i.content for i in got) == ["an apple a day", "nothing here"]
    assert [i.content for i in found] == ["an apple a day"]
    # Both were answered while the heavy user's searches were still running: at most the two
    # already reading (a user's share, half the readers) may finish first, none of those waiting.
    assert finished.index("light get") < finished.index("light search"), finished
    assert finished[: finished.index("light search")].count("heavy search") <= 2, finished
    assert finished.count("heavy search") == 6


async def test_one_users_reads_leave_readers_for_another(tmp_path: Path) -> None:
    release = threading.Event()

    def held(db: sqlite3.Connection) -> None:
        release.wait(30)

    def quick(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT 1").fetchone()[0])

    file = SqliteFile(tmp_path / "f.sqlite3", lambda db: None, readers=2)
    async with file, anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(partial(file.read, held, tenant="heavy"))
        await anyio.wait_all_tasks_blocked()
        try:
            with anyio.fail_after(10):
                assert await file.read(quick, tenant="light") == 1
        finally:
            release.set()


# -- Schema 2 -> 3 ------------------------------------------------------------------------

V2_TURNS = [
    ("ann", "I ordered sushi in Tokyo", "", ""),
    ("ann", "東京で寿司を食べた", "expert says: refunds take a week", ""),
    ("ann", "Running late for the meeting_room booking", "", "clicked Book"),
    ("ann", "the cafés were naïve about caching", "", ""),
    ("bob", "ordering a refund for the broken battery", "", ""),
    ("bob", "北京烤鸭很好吃", "", "看了菜单"),
    ("bob", "meeting tomorrow about the order", "", ""),
    ("bob", "order order order", "", ""),
    ("cat", "", "", "scrolled the 서울 page"),
    ("cat", "nothing to see", "", ""),
]
V2_QUERIES = [
    "order", "orders", "ord", "refund", "meeting", "meeting_room", "寿司", "東", "北京", "烤鸭",
    "서울", "cafe", "naive", "caching", "book", "a", "the", "nothing here", "zzz", "!!!",
]  # fmt: skip


def v2_file(folder: Path) -> Path:
    """A version 2 store as schema 2's code left it: its rows and both indexes (the CJK one
    filled as it filled it), with a deleted row's id left unused."""
    path = folder / "interactions.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN")
    for statement in V2_SCHEMA:
        db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (2)")
    for n, (user, content, expert, described) in enumerate(V2_TURNS):
        db.execute(
            "INSERT INTO publishes VALUES (?, ?, ?, 'src', 'v1', ?)", (f"r{n}", user, "s", n)
        )
        cursor = db.execute(
            "INSERT INTO interactions (user_id, request_id, created_at, role, content, "
            "expert_content, user_action, user_action_description, interacted_image_url, "
            "image_encoding, tools_used) VALUES (?, ?, ?, 'User', ?, ?, 'none', ?, '', '', '[]')",
            (user, f"r{n}", 1000 + n, content, expert, described),
        )
        if grams := cjk_grams(content, expert, described):
            db.execute(
                "INSERT INTO interactions_cjk (rowid, grams) VALUES (?, ?)",
                (cursor.lastrowid, grams),
            )
    db.execute("DELETE FROM interactions WHERE content = 'nothing to see'")
    db.execute("COMMIT")
    db.close()
    return path


def v2_search(path: Path, user: str, query: str) -> set[int]:
    """What schema 2's search found: its FTS query on the file itself (every match, unranked)."""
    db = sqlite3.connect(path)
    try:
        matches = [
            (table, match)
            for table, match in (
                ("interactions_fts", word_match(query)),
                ("interactions_cjk", cjk_match(query)),
            )
            if match
        ]
        found: set[int] = set()
        for table, match in matches:
            rows = db.execute(
                f"SELECT i.interaction_id FROM {table} f JOIN interactions i ON "
                f"i.interaction_id = f.rowid WHERE {table} MATCH ? AND i.user_id = ?",
                (match, user),
            )
            found |= {row[0] for row in rows}
        return found
    finally:
        db.close()


def rows_of(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM interactions ORDER BY interaction_id").fetchall()
    finally:
        db.close()


async def test_a_version_2_file_keeps_every_row_id_and_search_result(tmp_path: Path) -> None:
    path = v2_file(tmp_path)
    rows = rows_of(path)
    users = sorted({user for user, *_ in V2_TURNS})
    before = {(user, query): v2_search(path, user, query) for user in users for query in V2_QUERIES}
    assert sum(map(len, before.values())) > 20  # the queries do find things
    async with EmbeddedStore(tmp_path) as store:
        for (user, query), ids in before.items():
            found = (
                await store.search_interactions(
                    SearchRequest(user_id=user, query=query, top_k=100, search_mode="fts")
                )
            ).interactions
            assert {i.interaction_id for i in found} == ids, (user, query)
        listed = await store.get_interactions(GetRequest(user_id="ann", top_k=100))
        assert sorted(i.interaction_id for i in listed) == [r[0] for r in rows if r[1] == "ann"]
        await store.publish(publish("ann", ["after the upgrade"]), wait_for_response=False)
        [newest] = (
            await store.search_interactions(SearchRequest(user_id="ann", query="upgrade"))
        ).interactions
        assert newest.interaction_id == max(r[0] for r in rows) + 2  # the deleted id stays unused
        for interaction in listed:
            await store.delete_interaction("ann", interaction.interaction_id)
        assert (
            await store.search_interactions(SearchRequest(user_id="ann", query="寿司"))
        ).interactions == []
        assert (
            await store.search_interactions(SearchRequest(user_id="ann", query="order"))
        ).interactions == []
        found = (
            await store.search_interactions(SearchRequest(user_id="bob", query="order"))
        ).interactions
        assert {i.interaction_id for i in found} == before[("bob", "order")]
    after = rows_of(path)
    assert [r for r in after if r[1] != "ann"] == [r for r in rows if r[1] != "ann"]
    assert [r[5] for r in after if r[1] == "ann"] == ["after the upgrade"]
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    for table in ("interactions_words", "interactions_grams"):
        db.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
    db.close()


MIGRATION_STOPPED = """
import sys, time
import anyio
from pathlib import Path
from reflexio_mcp.backends.embedded import schema, store as embedded_store

schema.MIGRATION_BATCH = 2
index = schema.index_turns
batches = 0

def index_then_stop(*args, **kwargs):
    global batches
    index(*args, **kwargs)
    batches += 1
    if batches == 2:
        print("half-way", flush=True)
        time.sleep(600)

schema.index_turns = index_then_stop

async def main():
    async with embedded_store.EmbeddedStore(Path(sys.argv[1])):
        pass

anyio.run(main)
"""


def test_a_migration_killed_half_way_leaves_the_version_2_file(tmp_path: Path) -> None:
    path = v2_file(tmp_path)
    rows = rows_of(path)
    before = v2_search(path, "bob", "order")
    with subprocess.Popen(
        [sys.executable, "-c", MIGRATION_STOPPED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as migrating:
        try:
            assert migrating.stdout is not None
            assert migrating.stdout.readline() == "half-way\n"
        finally:
            os.kill(migrating.pid, signal.SIGKILL)
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    db.close()
    assert rows_of(path) == rows
    assert v2_search(path, "bob", "order") == before  # schema 2's own search still works

    async def open_it() -> set[int]:
        async with EmbeddedStore(tmp_path) as store:
            found = (
                await store.search_interactions(SearchRequest(user_id="bob", query="order"))
            ).interactions
        return {i.interaction_id for i in found}

    assert anyio.run(open_it) == before
    assert rows_of(path) == rows


# -- The per-user vocabulary finds what a plain index finds --------------------------------

PIECES = [
    "order", "orders", "Ordering", "ordered", "run", "running", "RUNS", "café", "cafe",
    "naïve", "feed", "feeds", "agreed", "a", "i", "is", "x2y", "foo_bar", "don't", "東京",
    "寿司", "東京で寿司を食べた", "北京烤鸭", "서울", "비빔밥", "ｶﾀｶﾅ", "・", "🙂", "42",
]  # fmt: skip
text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=8).map(" ".join)


def plain_index() -> sqlite3.Connection:
    """Schema 2's two indexes, of every user's text together."""
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE words USING fts5 (content, expert_content, "
        "user_action_description, tokenize='porter unicode61')"
    )
    db.execute("CREATE VIRTUAL TABLE pairs USING fts5 (grams, tokenize='unicode61')")
    return db


def user_index() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    for statement in USER_INDEXES[1:]:
        db.execute(statement)
    return db


@settings(max_examples=300, deadline=None)
@given(
    turns=st.lists(st.tuples(st.integers(1, 3), text, text, text), min_size=1, max_size=8),
    query=text,
    user=st.integers(1, 3),
)
def test_each_users_vocabulary_finds_what_a_plain_index_finds(
    turns: list[tuple[int, str, str, str]], query: str, user: int
) -> None:
    vocabulary = Vocabulary()
    plain, mine = plain_index(), user_index()
    try:
        for rowid, (owner, *texts) in enumerate(turns, start=1):
            plain.execute(
                "INSERT INTO words (rowid, content, expert_content, user_action_description) "
                "VALUES (?, ?, ?, ?)",
                (rowid, *texts),
            )
            if grams := cjk_grams(*texts):
                plain.execute("INSERT INTO pairs (rowid, grams) VALUES (?, ?)", (rowid, grams))
            [(words, pairs)] = vocabulary.index_texts(owner, [texts])
            mine.execute(
                "INSERT INTO interactions_words (rowid, content, expert_content, "
                "user_action_description) VALUES (?, ?, ?, ?)",
                (rowid, *words),
            )
            if pairs:
                mine.execute(
                    "INSERT INTO interactions_grams (rowid, grams) VALUES (?, ?)", (rowid, pairs)
                )
        owned = {rowid for rowid, (owner, *_) in enumerate(turns, start=1) if owner == user}
        expected: set[int] = set()
        for table, match in (("words", word_match(query)), ("pairs", cjk_match(query))):
            if match:
                rows = plain.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (match,))
                expected |= {row[0] for row in rows} & owned
        found: set[int] = set()
        tables = ("interactions_words", "interactions_grams")
        for table, terms in zip(tables, vocabulary.matches(user, query), strict=True):
            if match := " OR ".join(terms):
                rows = mine.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (match,))
                found |= {row[0] for row in rows}
        assert found == expected
    finally:
        vocabulary.close()
        plain.close()
        mine.close()
