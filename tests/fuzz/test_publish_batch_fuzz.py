"""Fuzzing publish_batch, in process on the embedded store: it answers any items one by
one, and its good items are stored once, however often the batch is sent.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.support.surface_fuzzing import (
    JSON,
    PINNED,
    Args,
    call,
    clean,
    client_of,
    examples,
    fresh,
    harness,
    ok,
    text_of,
)

# =============================================================================================
# publish_batch
# =============================================================================================

GOOD_TURN: SearchStrategy[Args] = st.fixed_dictionaries(
    {"content": st.text(min_size=1, max_size=40).map(lambda text: "said " + text)},
    optional={
        "role": st.sampled_from(["user", "assistant"]),
        "tools_used": st.just([{"tool_name": "t", "tool_data": {"k": [1, "v"]}}]),
    },
)
ODD_TURNS: SearchStrategy[Any] = st.lists(
    st.fixed_dictionaries({}, optional={"content": JSON, "role": JSON, "colour": JSON}), max_size=2
)
ODD_ITEM: SearchStrategy[Any] = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "interactions": ODD_TURNS | JSON,
            "user_message": JSON,
            "agent_response": JSON,
            "user_id": st.sampled_from(["ann", "bob", "a/b", "", " x"]) | JSON,
            "session_id": JSON,
            "request_id": JSON,
            "source": st.sampled_from(["mcp", "Chat Bot", ""]) | JSON,
            "wait_for_response": JSON,
        },
    ),
)


@dataclass(frozen=True)
class Good:
    """A valid batch item, with the request_id that makes it idempotent."""

    item: Args
    turns: int


def good_items(user: SearchStrategy[str]) -> SearchStrategy[Good]:
    def build(turns: list[Args] | None, user_id: str, shortcut: bool) -> Good:
        item: Args = {"request_id": fresh("batch"), "session_id": fresh("s")}
        if user_id:
            item["user_id"] = user_id
        if shortcut or not turns:
            return Good({**item, "user_message": "hello", "agent_response": "world"}, 2)
        return Good({**item, "interactions": turns}, len(turns))

    return st.builds(build, st.lists(GOOD_TURN, max_size=3), user, st.booleans())


def test_a_batch_answers_every_item_and_stores_the_good_ones_once() -> None:
    with harness(client=client_of(), pinned=client_of(user_id=PINNED, pin_user=True)) as served:

        @examples(25)
        @given(
            data=st.data(),
            pinned=st.booleans(),
            sends=st.integers(1, 3),
            together=st.booleans(),
        )
        def example(data: st.DataObject, pinned: bool, sends: int, together: bool) -> None:
            users = st.sampled_from(["", PINNED] if pinned else ["", "ann", "bob", "東京"])
            items: list[Any] = data.draw(
                st.lists(st.one_of(good_items(users), ODD_ITEM), min_size=1, max_size=8),
                label="items",
            )
            client = served["pinned" if pinned else "client"]
            wire = [item.item if isinstance(item, Good) else item for item in items]
            answers: list[list[dict[str, Any]]] = []

            async def send() -> None:
                result = await call(client, "publish_batch", {"publishes": wire})
                assert not result.is_error, text_of(result)
                answer = result.structured_content
                assert answer is not None
                assert answer["succeeded"] + answer["failed"] == answer["count"] == len(items)
                answers.append(answer["results"])

            async def run() -> None:
                if together:  # the same batch sent again before the first answered
                    async with anyio.create_task_group() as tasks:
                        for _ in range(sends):
                            tasks.start_soon(send)
                else:
                    for _ in range(sends):
                        await send()
                for index, item in enumerate(items):
                    outcomes = [results[index] for results in answers]
                    for outcome in outcomes:
                        assert outcome["index"] == index, outcome
                        if not outcome["ok"]:
                            clean(outcome["message"])
                            assert outcome["message"].startswith("invalid input: "), outcome
                        elif pinned:
                            assert outcome["user_id"] == PINNED, outcome
                    if not isinstance(item, Good):
                        continue
                    statuses = sorted(outcome["status"] for outcome in outcomes)
                    assert statuses == ["already_stored"] * (sends - 1) + ["stored"], outcomes
                    owner = item.item.get("user_id") or (PINNED if pinned else "user-default")
                    arguments: Args = {"request_id": item.item["request_id"], "top_k": 1000}
                    if not pinned:
                        arguments["user_id"] = owner
                    found = await ok(client, "search_interactions", arguments)
                    assert found["count"] == item.turns, (found["count"], item)

            served.run(run)

        example()
