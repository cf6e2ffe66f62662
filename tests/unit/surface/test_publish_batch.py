"""publish_batch, in process on the embedded store: each conversation on its own, a bad one
answered alone, idempotent by request_id, scoped for pinned callers, and any items at all
answered item by item (hypothesis)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp.types import CallToolResult, TextContent

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.publishing import MAX_BATCH


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncGenerator[Client]:
    async with Client(build_server(Settings(backend="embedded", data_dir=tmp_path))) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


async def batch(client: Client, publishes: list[Any]) -> dict[str, Any]:
    result = await client.call_tool("publish_batch", {"publishes": publishes})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def contents(client: Client, user_id: str) -> list[str]:
    listed = await client.call_tool("get_interactions", {"user_id": user_id})
    assert listed.structured_content is not None
    return [turn["content"] for turn in listed.structured_content["interactions"]]


GOOD = {
    "user_id": "ann",
    "session_id": "s-1",
    "request_id": "import-1",
    "interactions": [{"role": "user", "content": "Plant the tulips in October"}],
}
SHORTCUT = {"user_message": "Which soil?", "agent_response": "Sandy, well drained"}
BAD = {"user_id": "ann", "interactions": [{"role": "user", "content": "", "colour": "red"}]}


async def test_a_bad_item_fails_alone(mcp: Client) -> None:
    answer = await batch(mcp, [GOOD, BAD, SHORTCUT])
    assert (answer["count"], answer["succeeded"], answer["failed"]) == (3, 2, 1)
    first, bad, third = answer["results"]
    assert first == {
        "index": 0,
        "ok": True,
        "status": "stored",
        "user_id": "ann",
        "session_id": "s-1",
        "request_id": "import-1",
        "stored": 1,
        "redacted": {},
        "message": first["message"],
    }
    assert bad["index"] == 1
    assert bad["ok"] is False
    assert bad["status"] == "failed"
    assert bad["message"].startswith("invalid input: ")
    assert "interactions[0].colour" in bad["message"]
    assert third["ok"] is True
    assert third["user_id"] == "user-default"
    assert third["stored"] == 2
    assert await contents(mcp, "ann") == ["Plant the tulips in October"]
    assert sorted(await contents(mcp, "user-default")) == ["Sandy, well drained", "Which soil?"]


async def test_a_batch_sent_again_stores_nothing_twice(mcp: Client) -> None:
    await batch(mcp, [GOOD])
    again = await batch(mcp, [GOOD, {**GOOD, "request_id": "import-2"}])
    assert [r["status"] for r in again["results"]] == ["already_stored", "stored"]
    assert await contents(mcp, "ann") == ["Plant the tulips in October"] * 2


async def test_items_are_checked_like_publish_interaction_arguments(mcp: Client) -> None:
    answer = await batch(
        mcp,
        [
            {},
            {"user_message": "only half"},
            {"interactions": []},
            {"user_id": "a/b", "user_message": "x", "agent_response": "y"},
            "not an object",
        ],
    )
    messages = [r["message"] for r in answer["results"]]
    assert answer["failed"] == 5
    assert "interactions: required" in messages[0]
    assert "agent_response: required" in messages[1]
    assert "interactions" in messages[2]
    assert "user_id" in messages[3]
    assert "publishes[4]" in messages[4] or "object" in messages[4]


async def test_the_call_itself_is_bounded(mcp: Client) -> None:
    empty = await mcp.call_tool("publish_batch", {"publishes": []})
    assert empty.is_error
    assert text_of(empty).startswith("invalid input: publishes")
    many = await mcp.call_tool("publish_batch", {"publishes": [SHORTCUT] * (MAX_BATCH + 1)})
    assert many.is_error
    assert text_of(many).startswith("invalid input: publishes")


async def test_items_are_described_as_publish_interactions_arguments(mcp: Client) -> None:
    # One copy of the item's schema in the list: publish_interaction's; each item is checked
    # against it on its own, so a bad one fails alone.
    tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    publishes = tools["publish_batch"].input_schema["properties"]["publishes"]
    assert publishes["items"] == {"type": "object"}
    assert "publish_interaction's arguments" in (tools["publish_batch"].description or "")
    assert {"interactions", "user_message", "user_id", "session_id", "request_id"} <= set(
        tools["publish_interaction"].input_schema["properties"]
    )


async def test_a_pinned_caller_publishes_only_as_itself(tmp_path: Path) -> None:
    pinned = Settings(backend="embedded", data_dir=tmp_path, user_id="ann", pin_user=True)
    async with Client(build_server(pinned)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        # Items take publish_interaction's arguments, which a pinned caller sees without user_id.
        assert "user_id" not in tools["publish_interaction"].input_schema["properties"]
        answer = await batch(client, [{**GOOD, "user_id": "bob"}, SHORTCUT])
        bob, own = answer["results"]
        assert not bob["ok"]
        assert bob["message"] == (
            "invalid input: user_id: this caller publishes only as 'ann'; leave user_id out"
        )
        assert own["ok"]
        assert own["user_id"] == "ann"
        assert await contents(client, "ann") != []


JSON: SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)
TURNS: SearchStrategy[Any] = st.lists(
    st.fixed_dictionaries({}, optional={"role": JSON, "content": JSON}), max_size=3
)
ITEM: SearchStrategy[Any] = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "interactions": TURNS | JSON,
            "user_message": JSON,
            "agent_response": JSON,
            "user_id": JSON,
            "session_id": JSON,
            "request_id": JSON,
        },
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(ITEM, min_size=1, max_size=6))
def test_any_items_get_one_answer_each(
    items: list[Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    async def run() -> None:
        data = tmp_path_factory.mktemp("batch")
        async with Client(build_server(Settings(backend="embedded", data_dir=data))) as client:
            result = await client.call_tool("publish_batch", {"publishes": items})
            if result.is_error:  # only the list itself can fail the call
                assert text_of(result).startswith("invalid input: publishes"), text_of(result)
                return
            assert result.structured_content is not None
            answers = result.structured_content["results"]
            assert [a["index"] for a in answers] == list(range(len(items)))
            for answer in answers:
                assert answer["ok"] or answer["message"].startswith("invalid input: ")
                assert "Traceback" not in answer["message"]

    anyio.run(run)
