"""Fuzzing the learnings tools against the real Reflexio: search_learnings and delete_learning
answer any arguments in their own words, act only for the user named (or the caller's own),
and change nothing the user did not agree to.

One server (and a pinned one) on the shared Reflexio; a publish first teaches Reflexio a
profile and a user playbook for the fuzzed user, which every example may look for or try to
delete; the user declines every question, so at the end both must still be there, unchanged.
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples per property.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from reflexio_mcp.app import build_server
from reflexio_mcp.core.learnings import KINDS
from reflexio_mcp.settings import Settings
from tests.support.reflexio_server import RunningServer
from tests.support.surface_fuzzing import Args, Harness, call, clean, examples, harness, ok, text_of

PINNED = "ann-learns"


async def declines(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="decline")


def client_on(reflexio: RunningServer, **more: Any) -> Any:
    def make(data_dir: Path) -> Client:
        settings = Settings(url=reflexio.url, data_dir=data_dir / str(len(more)), **more)
        return Client(build_server(settings), elicitation_callback=declines)

    return make


ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "../..", "a:b", "%2F", "🙂", "x" * 300, "profile:"]),
)
ANYTHING: SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    ODD_TEXT,
    st.lists(st.integers(), max_size=3),
)


def search_arguments(word: str, user: str) -> SearchStrategy[Args]:
    return st.fixed_dictionaries(
        {},
        optional={
            "query": st.one_of(st.just(word), st.just(f"{word} garden"), ODD_TEXT, ANYTHING),
            "kinds": st.one_of(
                st.lists(st.sampled_from(KINDS), max_size=4),
                st.lists(ODD_TEXT, max_size=2),
                ANYTHING,
            ),
            "top_k": st.one_of(
                st.integers(-2, 102), st.sampled_from([0, 1, 100, 101, 2**63]), ANYTHING
            ),
            "search_mode": st.one_of(st.sampled_from(["fts", "vector", "hybrid", "FTS"]), ANYTHING),
            "user_id": st.one_of(
                st.just(user), st.just(PINNED), st.just("someone-else"), ODD_TEXT, ANYTHING
            ),
            "limit": ANYTHING,
        },
    )


def joined(kind: str, rest: str) -> str:
    return f"{kind}:{rest}"


def delete_arguments(ids: list[str], user: str) -> SearchStrategy[Args]:
    return st.fixed_dictionaries(
        {},
        optional={
            "learning_id": st.one_of(
                st.sampled_from(ids),
                st.sampled_from(
                    ["agent_playbook:1", "user_playbook:0", "user_playbook:-1", "profile:x"]
                ),
                st.builds(joined, st.sampled_from(KINDS), ODD_TEXT),
                ODD_TEXT,
                ANYTHING,
            ),
            "correction": st.one_of(ODD_TEXT, ANYTHING),
            "confirm": ANYTHING,
            "user_id": st.one_of(st.just(user), st.just("someone-else"), ODD_TEXT, ANYTHING),
            "kind": ANYTHING,
        },
    )


def seeded(h: Harness, user: str, word: str) -> list[dict[str, Any]]:
    """Teach Reflexio one profile and one user playbook of `user`; answer them."""
    h.run(
        lambda: ok(
            h["free"],
            "publish_interaction",
            {
                "user_id": user,
                "user_message": "remember",
                "agent_response": f"I keep {word} in the garden",
                "wait_for_response": True,
                "force_extraction": True,
            },
        )
    )
    found = h.run(lambda: ok(h["free"], "search_learnings", {"user_id": user, "query": word}))
    assert {hit["kind"] for hit in found["learnings"]} == {"profile", "user_playbook"}
    return found["learnings"]


def checked(result: Any, tool: str, arguments: Args, acting: str) -> dict[str, Any] | None:
    text = text_of(result)
    if result.is_error:
        clean(text)
        return None
    assert result.structured_content is not None, (tool, arguments)
    assert json.loads(text), text  # the compact text is the result's JSON
    return result.structured_content


def test_search_learnings_answers_any_arguments_for_the_user_named(
    reflexio: RunningServer,
) -> None:
    user, word = f"fuzz-{uuid.uuid4().hex[:8]}", f"medlar{uuid.uuid4().hex[:8]}"
    with harness(
        free=client_on(reflexio), pinned=client_on(reflexio, user_id=PINNED, pin_user=True)
    ) as h:
        seeds = seeded(h, user, word)

        @given(arguments=search_arguments(word, user), pinned=st.booleans())
        @examples(40)
        def property_(arguments: Args, pinned: bool) -> None:
            note(repr(arguments))
            client = h["pinned" if pinned else "free"]
            result = h.run(lambda: call(client, "search_learnings", arguments))
            found = checked(result, "search_learnings", arguments, PINNED if pinned else user)
            if found is None:
                return
            named = arguments.get("user_id")
            if pinned:
                assert found["user_id"] == PINNED
            elif isinstance(named, str) and named.strip():
                assert found["user_id"] == named
            for hit in found["learnings"]:
                assert hit["kind"] in KINDS
                if hit["kind"] != "agent_playbook":
                    assert hit["user_id"] == found["user_id"], hit
            if found["user_id"] != user:
                assert not any(
                    word in hit["content"] for hit in found["learnings"] if hit["user_id"]
                )

        property_()
        still = h.run(lambda: ok(h["free"], "search_learnings", {"user_id": user, "query": word}))
        assert still["learnings"] == seeds


def test_delete_learning_answers_any_arguments_and_changes_nothing_unagreed(
    reflexio: RunningServer,
) -> None:
    user, word = f"fuzz-{uuid.uuid4().hex[:8]}", f"sloe{uuid.uuid4().hex[:8]}"
    with harness(
        free=client_on(reflexio, allow_admin=True),
        pinned=client_on(reflexio, user_id=PINNED, pin_user=True),
    ) as h:
        seeds = seeded(h, user, word)
        ids = [hit["id"] for hit in seeds]

        @given(arguments=delete_arguments(ids, user), pinned=st.booleans())
        @examples(40)
        def property_(arguments: Args, pinned: bool) -> None:
            note(repr(arguments))
            client = h["pinned" if pinned else "free"]
            result = h.run(lambda: call(client, "delete_learning", arguments))
            changed = checked(result, "delete_learning", arguments, user)
            if changed is not None:  # the user declined every question
                assert changed["status"] == "declined", changed
                assert "nothing changed" in changed["message"]

        property_()
        still = h.run(lambda: ok(h["free"], "search_learnings", {"user_id": user, "query": word}))
        assert still["learnings"] == seeds
