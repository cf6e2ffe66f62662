"""How the embedded store ranks a search by words (search_mode fts): by the question's content
words, not its function words, each turn with its neighbours in its session. Meaning and the
fused hybrid ranking: test_meaning_search.py."""

from __future__ import annotations

import uuid
from pathlib import Path

from reflexio_mcp.backends.embedded.search import RANKED_TURNS
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.core.models import InteractionData, PublishRequest, SearchRequest


def session(user_id: str, session_id: str, *contents: str, start: int = 0) -> PublishRequest:
    return PublishRequest(
        request_id=str(uuid.uuid4()),
        user_id=user_id,
        session_id=session_id,
        interaction_data_list=[
            InteractionData(content=content, created_at=1_700_000_000 + start + n)
            for n, content in enumerate(contents)
        ],
    )


async def search(store: EmbeddedStore, query: str, top_k: int = 10) -> list[str]:
    found = (
        await store.search_interactions(
            SearchRequest(user_id="u", query=query, top_k=top_k, search_mode="fts")
        )
    ).interactions
    return [turn.content for turn in found]


async def test_a_question_is_matched_by_its_content_words_not_its_function_words(
    tmp_path: Path,
) -> None:
    database = "In the end we went with Postgres as the database, for its JSON support."
    chatter = "What did we do about it, and what did we do about the rest? We did what we did."
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(
            session("u", "chat", chatter, database, "Lunch at noon?"), wait_for_response=False
        )
        assert (await search(store, "what did we decide about the database?", top_k=1)) == [
            database
        ]


async def test_a_question_of_only_function_words_still_finds_them(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(
            session("u", "chat", "Lunch at noon.", "It was what it was."), wait_for_response=False
        )
        assert await search(store, "what was it?") == ["It was what it was."]


async def test_the_answer_after_a_question_ranks_above_a_closer_match_alone(
    tmp_path: Path,
) -> None:
    question, answer = "Where did you go on holiday?", "Paris, with my sister, in June."
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(session("u", "trip", question, answer), wait_for_response=False)
        # Next in time, but of another session: "Paris" is no neighbour of it.
        await store.publish(
            session("u", "work", "June, then.", "Lunch at noon?", start=2), wait_for_response=False
        )
        found = await search(store, "where did we go on holiday in june?")
        # Only matches are found: "Lunch at noon?" is no answer, neighbour or not.
        assert found == [question, answer, "June, then."]


async def test_a_turn_whose_neighbours_share_the_question_ranks_above_one_alone(
    tmp_path: Path,
) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(
            session("u", "monday", "Is the login bug back?", "We fixed the login bug.", "Good."),
            wait_for_response=False,
        )
        await store.publish(
            session("u", "friday", "Tea?", "We fixed the login bug.", start=100),
            wait_for_response=False,
        )
        found = (
            await store.search_interactions(
                SearchRequest(user_id="u", query="the login bug", top_k=3, search_mode="fts")
            )
        ).interactions
        fixed = [turn.created_at for turn in found if turn.content == "We fixed the login bug."]
        assert fixed == [1_700_000_001, 1_700_000_101]  # the newer, alone, ranks below


async def test_another_users_turns_are_no_ones_neighbours(tmp_path: Path) -> None:
    publishes = [
        session("u", "chat", "Tea?"),
        session("v", "chat", "Is the login bug back?", start=1),
        session("u", "chat", "We fixed the login bug.", start=2),
        session("u", "later", "We fixed the login bug.", start=100),
    ]
    async with EmbeddedStore(tmp_path) as store:
        for request in publishes:
            await store.publish(request, wait_for_response=False)
        found = (
            await store.search_interactions(
                SearchRequest(user_id="u", query="the login bug", top_k=3, search_mode="fts")
            )
        ).interactions
        # v's turn, in a session of the same name between u's, lends u's turn nothing.
        assert [turn.created_at for turn in found] == [1_700_000_100, 1_700_000_002]


async def test_a_cjk_question_with_function_words_still_finds_its_substring(
    tmp_path: Path,
) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(
            session("u", "chat", "東京で寿司を食べた", "What about it?"), wait_for_response=False
        )
        assert await search(store, "what about 寿司?") == ["東京で寿司を食べた"]


async def test_a_run_of_thousands_of_cjk_characters_is_stored_and_found(tmp_path: Path) -> None:
    long_run = "寿司" * 12_500  # one token of 75,000 bytes: FTS5 used to cut it unreadably
    async with EmbeddedStore(tmp_path) as store:
        await store.publish(session("u", "chat", long_run, "plain words"), wait_for_response=False)
        await store.publish(session("u", "chat", "after it", start=5), wait_for_response=False)
        assert await search(store, "寿司") == [long_run]
        assert await search(store, "plain") == ["plain words"]
        assert await search(store, long_run[:9_000]) == [long_run]


async def test_a_later_page_of_a_long_search_keeps_the_scores_of_the_first(
    tmp_path: Path,
) -> None:
    """A search for more than the 200 candidates ranks as many; a later page ranks as many
    again, so its turns keep the scores the whole ranking gave them."""
    async with EmbeddedStore(tmp_path) as store:
        for part in range(3):
            contents = [f"note {part}-{n} about the garden" for n in range(400)]
            await store.publish(
                session("u", f"s{part}", *contents, start=part * 1000), wait_for_response=False
            )
        request = SearchRequest(user_id="u", query="garden", top_k=1000, search_mode="fts")
        ranked = (await store.search_interactions(request)).interactions
        assert len(ranked) == 1000
        last = ranked[-100:]
        again = await store.search_interactions(request, [turn.interaction_id for turn in last])
        scores = {turn.interaction_id: turn.score for turn in again.interactions}
        assert [scores[turn.interaction_id] for turn in last] == [turn.score for turn in last]
        assert None not in scores.values()


async def test_a_word_in_more_turns_than_a_search_ranks_is_left_to_the_rarer_words(
    tmp_path: Path,
) -> None:
    """bm25 scores every match before the best are taken: a word in more turns than
    RANKED_TURNS is left out when the question's rarer words match, and kept when it is the
    question's only word."""
    common = RANKED_TURNS + 50
    async with EmbeddedStore(tmp_path) as store:
        for start in range(0, common, 500):
            contents = [f"Notes of weekly sync {n}" for n in range(start, min(start + 500, common))]
            await store.publish(
                session("u", f"s{start}", *contents, start=start), wait_for_response=False
            )
        moved = ["The weekly sync moved to the boardroom.", "Boardroom booked for the sync."]
        await store.publish(session("u", "room", *moved, start=common), wait_for_response=False)
        assert sorted(await search(store, "weekly sync in the boardroom?")) == sorted(moved)
        assert len(await search(store, "weekly")) == 10
