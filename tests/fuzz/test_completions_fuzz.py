"""Fuzzing completions, in process on the embedded store: they answer any input with a
result or INVALID_PARAMS, and offer a pinned caller only its own users and sessions.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from reflexio_mcp.core.limits import MAX_ID_CHARS
from tests.support.surface_fuzzing import (
    OTHER,
    PINNED,
    client_of,
    examples,
    harness,
    invalid_params,
    ok,
)

# =============================================================================================
# Completions
# =============================================================================================

SESSIONS_TEMPLATE = "reflexio://users/{user_id}/sessions/{session_id}"
USERS_TEMPLATE = "reflexio://users/{user_id}/interactions"
REFS: SearchStrategy[PromptReference | ResourceTemplateReference] = st.one_of(
    st.builds(
        ResourceTemplateReference,
        uri=st.sampled_from([SESSIONS_TEMPLATE, USERS_TEMPLATE, "reflexio://status", "x"])
        | st.text(max_size=30),
    ),
    st.builds(
        PromptReference,
        name=st.sampled_from(["recall", "remember_this_conversation", "nope"])
        | st.text(max_size=20),
    ),
)
COMPLETION_TEXT = st.one_of(
    st.sampled_from(
        ["", "a", "b", "bo", OTHER, PINNED, "%62", "bob-", "ann-", "s", "\x00", "%", "_", "'"]
    ),
    st.text(max_size=20),
    st.just("x" * (MAX_ID_CHARS + 1)),
)


def test_completions_answer_anything_and_offer_a_pinned_caller_only_its_own() -> None:
    with harness(admin=client_of(), pinned=client_of(user_id=PINNED, pin_user=True)) as served:
        sessions = {
            PINNED: ["ann-trip", "ann-work"],
            OTHER: ["bob-trip", "bob-secret"],
            "bo%": ["bo%-s"],
        }

        async def seed() -> None:
            for user, names in sessions.items():
                for session in names:
                    await ok(
                        served["admin"],
                        "publish_interaction",
                        {
                            "user_id": user,
                            "session_id": session,
                            "user_message": "a",
                            "agent_response": "b",
                        },
                    )

        served.run(seed)
        others = {OTHER, "bo%", *sessions[OTHER], *sessions["bo%"]}

        @examples(60)
        @given(
            ref=REFS,
            name=st.sampled_from(["user_id", "session_id", "topic", ""]) | st.text(max_size=10),
            value=COMPLETION_TEXT,
            context=st.none()
            | st.dictionaries(
                st.sampled_from(["user_id", "session_id", "x"]) | st.text(max_size=5),
                COMPLETION_TEXT,
                max_size=3,
            ),
            pinned=st.booleans(),
        )
        def example(
            ref: PromptReference | ResourceTemplateReference,
            name: str,
            value: str,
            context: dict[str, str] | None,
            pinned: bool,
        ) -> None:
            client = served["pinned" if pinned else "admin"]

            async def run() -> list[str] | None:
                try:
                    answer = await client.complete(ref, {"name": name, "value": value}, context)
                except MCPError as err:
                    invalid_params(err)
                    return None
                return answer.completion.values

            values = served.run(run)
            if values is None:
                return
            assert len(values) <= 100
            assert all(v.startswith(value) for v in values), values
            if pinned:
                assert not others & set(values), values

        example()
