"""How the embedded store ranks a search: by the question's content words, not its function
words."""

from __future__ import annotations

import uuid
from pathlib import Path

from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.core.models import InteractionData, PublishRequest, SearchRequest


def session(user_id: str, session_id: str, *contents: str) -> PublishRequest:
    return PublishRequest(
        request_id=str(uuid.uuid4()),
        user_id=user_id,
        session_id=session_id,
        interaction_data_list=[
            InteractionData(content=content, created_at=1_700_000_000 + n)
            for n, content in enumerate(contents)
        ],
    )


async def search(store: EmbeddedStore, query: str, top_k: int = 10) -> list[str]:
    found = await store.search_interactions(SearchRequest(user_id="u", query=query, top_k=top_k))
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
