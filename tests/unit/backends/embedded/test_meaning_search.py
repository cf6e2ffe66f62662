"""Search by meaning on the embedded store: what a user meant is found though no word is
shared, in other languages too; each search_mode does what it says; scores and threshold."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from reflexio_mcp.backends.embedded.embedder import EmbeddingChoice
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.models import InteractionData, Matches, PublishRequest, SearchRequest
from tests.support.meaning import indexed

TARGETS = {
    "datastore": "We chose PostgreSQL over MongoDB for the new service.",
    "veggie": "I'm vegetarian, so no meat for me please.",
    "dietary restrictions": "I'm vegetarian, so no meat for me please.",
    "airline": "Our flight was with TAP, it left two hours late.",
    "which package manager": "We switched the monorepo from npm to pnpm last month.",
    "sushi": "寿司が大好きで、毎週食べています。",
    "German": "Ich spreche fließend Deutsch und ein bisschen Französisch.",
    "holiday": "Last spring I spent a week in Lisbon with my sister.",
}
DISTRACTORS = [
    "The weather was nice yesterday.",
    "Can you review my pull request?",
    "I bought a new bike.",
    "My cat knocked over the plant again.",
    "The meeting moved to Thursday.",
    "I need to renew my passport.",
    "The concert tickets sold out fast.",
    "Try restarting the router.",
    "Happy birthday to your mum!",
    "The backend uses SQLAlchemy for all its models.",
]


def publish(user_id: str, *contents: str) -> PublishRequest:
    return PublishRequest(
        request_id=str(uuid.uuid4()),
        user_id=user_id,
        session_id=f"{user_id}-chat",
        interaction_data_list=[InteractionData(content=content) for content in contents],
    )


async def search(
    store: EmbeddedStore, query: str, mode: SearchMode = "hybrid", threshold: float | None = None
) -> Matches:
    request = SearchRequest(
        user_id="u", query=query, top_k=3, search_mode=mode, threshold=threshold
    )
    return await store.search_interactions(request)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncGenerator[EmbeddedStore]:
    """Each statement said in a conversation of its own, as a user's facts come up."""
    async with EmbeddedStore(tmp_path) as opened:
        for n, content in enumerate(dict.fromkeys([*TARGETS.values(), *DISTRACTORS])):
            request = publish("u", content).model_copy(update={"session_id": f"chat-{n}"})
            await opened.publish(request, wait_for_response=False)
        await indexed(opened, "u")
        yield opened


@pytest.mark.parametrize("query", TARGETS)
async def test_a_paraphrase_or_another_language_finds_what_was_meant(
    store: EmbeddedStore, query: str
) -> None:
    found = await search(store, query)
    assert found.search_mode == "hybrid"
    assert TARGETS[query] in [hit.content for hit in found.interactions], found


CONVERSATION = [
    ("Ann", "What did you end up naming the new puppy?"),
    ("Ben", "Biscuit! He already chewed my slippers."),
    ("Ann", "Where did you go on holiday in the spring?"),
    ("Ben", "Lisbon, for a week with my sister."),
    ("Ann", "Which database did the team pick in the end?"),
    ("Ben", "Postgres, after a long argument."),
]


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        ("Where did Ben travel?", "Lisbon, for a week with my sister."),
        ("Which datastore does Ben's team use?", "Postgres, after a long argument."),
    ],
)
async def test_a_reply_is_found_by_what_it_answers(tmp_path: Path, query: str, answer: str) -> None:
    async with EmbeddedStore(tmp_path) as store:
        turns = [InteractionData(role=role, content=content) for role, content in CONVERSATION]
        chat = PublishRequest(
            request_id="chat", user_id="u", session_id="chat", interaction_data_list=turns
        )
        await store.publish(chat, wait_for_response=False)
        for n, content in enumerate(DISTRACTORS):
            request = publish("u", content).model_copy(update={"session_id": f"chat-{n}"})
            await store.publish(request, wait_for_response=False)
        await indexed(store, "u")
        found = await search(store, query, "vector")
    assert [hit.content for hit in found.interactions][:1] == [answer], found


async def test_a_speakers_next_turn_does_not_take_the_meaning_of_the_one_before(
    tmp_path: Path,
) -> None:
    async with EmbeddedStore(tmp_path) as store:
        said = [TARGETS["datastore"], "Lunch at noon?"]
        await store.publish(publish("u", *said), wait_for_response=False)
        await indexed(store, "u")
        found = await search(store, "datastore", "vector")
    assert [hit.content for hit in found.interactions] == said


JUNE_2023, AUGUST_2023 = 1_686_000_000, 1_691_000_000


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("Where did we go camping in June?", "June"),
        ("Where did we go camping in August 2023?", "August"),
        ("Where did we go camping?", "August"),  # no month named: as ranked without a cue
    ],
)
async def test_a_question_naming_a_month_finds_what_was_said_then_first(
    tmp_path: Path, query: str, first: str
) -> None:
    said = {"June": "We went camping by the lake.", "August": "We went camping in the hills."}
    async with EmbeddedStore(tmp_path) as store:
        for n, (month, when) in enumerate((("June", JUNE_2023), ("August", AUGUST_2023))):
            turn = InteractionData(content=said[month], created_at=when)
            request = publish("u", said[month]).model_copy(
                update={"session_id": f"chat-{n}", "interaction_data_list": [turn]}
            )
            await store.publish(request, wait_for_response=False)
        await indexed(store, "u")
        found = await search(store, query)
    assert found.search_mode == "hybrid"
    assert [hit.content for hit in found.interactions][:1] == [said[first]], found


async def test_full_text_finds_only_the_words(store: EmbeddedStore) -> None:
    assert (await search(store, "datastore", "fts")).interactions == []
    [hit] = (await search(store, "PostgreSQL", "fts")).interactions
    assert hit.content == TARGETS["datastore"]
    assert hit.score is not None
    assert 0 < hit.score < 1


async def test_vector_ranks_every_turn_by_meaning(store: EmbeddedStore) -> None:
    found = await search(store, "zebra crossing", "vector")
    assert found.search_mode == "vector"
    assert len(found.interactions) == 3  # nearest, however far: that is what vector means
    scores = [hit.score or 0 for hit in found.interactions]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < score < 1 for score in scores)


async def test_hybrid_finds_nothing_for_what_nothing_stored_means(store: EmbeddedStore) -> None:
    assert (await search(store, "zebra crossing")).interactions == []


async def test_threshold_keeps_the_hits_scoring_at_least_it(store: EmbeddedStore) -> None:
    every = (await search(store, "vegetarian food", "vector")).interactions
    cut = every[0].score
    assert cut is not None
    kept = (await search(store, "vegetarian food", "vector", threshold=cut)).interactions
    assert [hit.interaction_id for hit in kept] == [every[0].interaction_id]


async def test_without_the_model_a_search_is_by_words_and_says_so(tmp_path: Path) -> None:
    words_only = EmbeddingChoice(enabled=False)
    async with EmbeddedStore(tmp_path, embedding=words_only) as store:
        await store.publish(publish("u", *TARGETS.values()), wait_for_response=False)
        for mode in ("hybrid", "vector"):
            found = await search(store, "PostgreSQL", mode)
            assert found.search_mode == "fts"
            assert [hit.content for hit in found.interactions] == [TARGETS["datastore"]]
            assert found.notes == ["searched by words only: turned off by the settings"]
        meaning = (await store.status("u")).meaning_index
        assert meaning is not None
        assert meaning.unavailable == "turned off by the settings"


async def test_a_model_that_cannot_load_leaves_search_by_words_and_says_why(
    tmp_path: Path,
) -> None:
    missing = EmbeddingChoice(model_file=tmp_path / "no-such-model.bin")
    async with EmbeddedStore(tmp_path, embedding=missing) as store:
        await store.publish(publish("u", *TARGETS.values()), wait_for_response=False)
        found = await search(store, "PostgreSQL")
        assert found.search_mode == "fts"
        assert [hit.content for hit in found.interactions] == [TARGETS["datastore"]]
        [note] = found.notes
        assert note.startswith("searched by words only: the embedding model could not be loaded")
        assert "no-such-model.bin" in note
