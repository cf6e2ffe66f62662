"""The contract: the same behaviour through the MCP tools, whichever backend stores the data.

Every test runs twice, in process (SDK Client(server)): on the embedded store and forwarding
to the real Reflexio server. Where the two must differ, the test says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    PromptReference,
    ResourceTemplateReference,
    TextResourceContents,
    ToolAnnotations,
)

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings
from tests.support.reflexio_server import RunningServer
from tests.support.tool_calls import call, error, text

DEFAULT_USER = "user-default"
TOOLS = {
    "publish_interaction",
    "publish_batch",
    "get_publish_status",
    "search_interactions",
    "get_interactions",
    "delete_interaction",
}
LEARNINGS_TOOLS = {"search_learnings", "delete_learning"}
"""Listed only on Reflexio: the embedded store learns nothing."""


@pytest.fixture(params=["embedded", "reflexio"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if kind == "reflexio":
        reflexio: RunningServer = request.getfixturevalue("reflexio")
        return Settings(url=reflexio.url, data_dir=tmp_path, allow_admin=True)
    return Settings(backend="embedded", data_dir=tmp_path, allow_admin=True)


@pytest.fixture
async def mcp(settings: Settings) -> AsyncGenerator[Client]:
    async with Client(build_server(settings)) as client:
        yield client


async def all_pages(client: Client, tool: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a listing, following next_cursor."""
    pages = [await call(client, tool, arguments)]
    while pages[-1]["next_cursor"]:
        assert pages[-1]["truncated"]
        pages.append(await call(client, tool, {"cursor": pages[-1]["next_cursor"]}))
    return pages


CONVERSATION = [
    {"role": "User", "content": "My sourdough starter smells like acetone."},
    {
        "role": "Agent",
        "content": "Throw it away and start again.",
        "expert_content": "Feed it twice a day; acetone means it is hungry, not dead.",
        "tools_used": [
            {"tool_name": "kb_search", "tool_data": {"q": "starter acetone"}, "status": "ok"}
        ],
    },
    {
        "role": "User",
        "content": "Thanks",
        "user_action": "CLICK",
        "user_action_description": "liked",
    },
]


async def test_tools_list_names_schemas_and_annotations(settings: Settings, kind: str) -> None:
    without_admin = settings.model_copy(update={"allow_admin": False})
    async with Client(build_server(without_admin)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    # get_all_interactions needs --allow-admin; only Reflexio learns profiles and playbooks.
    learnings = LEARNINGS_TOOLS if kind == "reflexio" else set[str]()
    assert set(tools) == TOOLS | learnings
    for tool in tools.values():
        assert tool.description
        assert len(tool.description) > 80
        assert tool.output_schema is not None
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
    annotations = {name: tool.annotations or ToolAnnotations() for name, tool in tools.items()}
    # Reflexio is another service; the embedded store is this process's own file. A hint at
    # the spec's default (openWorldHint and destructiveHint true) is left out.
    expect_open_world = None if kind == "reflexio" else False
    assert all(a.open_world_hint is expect_open_world for a in annotations.values())
    read_only = {n for n, a in annotations.items() if a.read_only_hint}
    destructive = {
        n
        for n, a in annotations.items()
        if not a.read_only_hint and a.destructive_hint is not False
    }
    assert read_only == {"search_interactions", "get_interactions", "get_publish_status"} | (
        learnings - {"delete_learning"}
    )
    assert destructive == {"delete_interaction"} | (learnings - {"search_learnings"})
    publish = tools["publish_interaction"].input_schema
    turn = publish["properties"]["interactions"]["items"]["properties"]
    assert set(turn) >= {
        "role", "content", "expert_content", "image_encoding", "user_action",
        "user_action_description", "interacted_image_url", "tools_used",
    }  # fmt: skip
    assert tools["get_interactions"].input_schema["properties"]["top_k"]["maximum"] == 1000


async def test_admin_flag_adds_get_all_interactions(mcp: Client, kind: str) -> None:
    names = {tool.name for tool in (await mcp.list_tools()).tools}
    learnings = LEARNINGS_TOOLS if kind == "reflexio" else set[str]()
    assert names == TOOLS | learnings | {"get_all_interactions"}


async def test_publish_then_get_returns_every_field_newest_first(mcp: Client, user_id: str) -> None:
    published = await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "interactions": CONVERSATION, "source": "tests", "session_id": "s1"},
    )
    assert published["stored"] == 3
    assert published["session_id"] == "s1"
    assert published["message"].startswith("Interaction published successfully")

    listed = await call(mcp, "get_interactions", {"user_id": user_id})
    assert listed["count"] == 3
    by_content = {i["content"]: i for i in listed["interactions"]}
    agent = by_content["Throw it away and start again."]
    assert agent["expert_content"].startswith("Feed it twice a day")
    assert agent["tools_used"] == [
        {"tool_name": "kb_search", "tool_data": {"q": "starter acetone"}, "status": "ok"}
    ]
    assert agent["request_id"] == published["request_id"]
    assert by_content["Thanks"]["user_action"] == "click"  # "CLICK", as Reflexio's docs send it
    times = [i["created_at"] for i in listed["interactions"]]
    assert times == sorted(times, reverse=True)


async def test_single_exchange_shortcut_and_process_session(mcp: Client, user_id: str) -> None:
    first = await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "ping", "agent_response": "pong"},
    )
    second = await call(
        mcp, "publish_interaction", {"user_id": user_id, "user_message": "a", "agent_response": "b"}
    )
    assert first["stored"] == 2
    assert first["session_id"] == second["session_id"]
    assert first["session_id"].startswith("reflexio-mcp-")
    assert first["request_id"] != second["request_id"]
    listed = await call(mcp, "get_interactions", {"user_id": user_id})
    roles = {(i["role"], i["content"]) for i in listed["interactions"]}
    assert {("user", "ping"), ("assistant", "pong")} <= roles


async def test_default_user_is_used_when_none_given(mcp: Client) -> None:
    published = await call(
        mcp, "publish_interaction", {"user_message": "who am I", "agent_response": "the default"}
    )
    assert published["user_id"] == DEFAULT_USER


async def test_search_finds_by_word_and_honours_top_k(mcp: Client, user_id: str) -> None:
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": CONVERSATION})
    by_words = {"user_id": user_id, "query": "acetone", "search_mode": "fts"}
    found = await call(mcp, "search_interactions", by_words)  # hybrid may add meaning matches
    assert found["count"] >= 1
    assert all("acetone" in i["content"] + i["expert_content"] for i in found["interactions"])
    one = await call(
        mcp,
        "search_interactions",
        {"user_id": user_id, "query": "sourdough acetone thanks", "top_k": 1},
    )
    assert one["count"] == 1
    words = {"user_id": user_id, "query": "zeppelin", "search_mode": "fts"}
    none = await call(mcp, "search_interactions", words)
    none.pop("search_mode_effective")  # differs by backend: test_search_says_the_mode_it_ran
    assert none == {
        "user_id": user_id,
        "count": 0,
        "interactions": [],
        "truncated": False,
        "next_cursor": None,
        "note": None,
        "context": [],
    }


async def test_delete_reports_what_it_deleted_and_not_found(mcp: Client, user_id: str) -> None:
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "forget me", "agent_response": "ok"},
    )
    listed = await call(mcp, "get_interactions", {"user_id": user_id})
    target = next(i for i in listed["interactions"] if i["content"] == "forget me")

    deleted = await call(
        mcp,
        "delete_interaction",
        {"user_id": user_id, "interaction_id": target["interaction_id"], "confirm": True},
    )
    assert deleted["deleted"]["content"] == "forget me"
    after = await call(mcp, "get_interactions", {"user_id": user_id})
    assert target["interaction_id"] not in {i["interaction_id"] for i in after["interactions"]}

    again = await error(
        mcp, "delete_interaction", {"user_id": user_id, "interaction_id": target["interaction_id"]}
    )
    assert (
        f"no interaction {target['interaction_id']} for user '{user_id}': nothing was deleted"
        in again
    )


async def test_delete_refuses_another_users_interaction(mcp: Client, user_id: str) -> None:
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "mine", "agent_response": "ok"},
    )
    mine = (await call(mcp, "get_interactions", {"user_id": user_id}))["interactions"][0]
    message = await error(
        mcp,
        "delete_interaction",
        {"user_id": "someone-else", "interaction_id": mine["interaction_id"]},
    )
    assert "nothing was deleted" in message
    still = await call(mcp, "get_interactions", {"user_id": user_id})
    assert mine["interaction_id"] in {i["interaction_id"] for i in still["interactions"]}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            {"interactions": CONVERSATION, "source": "Chat Bad"},
            "invalid input: source: must be lowercase letters, digits and . _ : - only, starting "
            "with a letter or digit, at most 128 characters (or empty); e.g. 'chat-bad'",
        ),
        (
            {},
            "invalid input: interactions: required; give interactions (a list of turns) or "
            "user_message and agent_response together",
        ),
        (
            {"user_message": "hi"},
            "invalid input: agent_response: required; give interactions (a list of turns) or "
            "user_message and agent_response together",
        ),
        (
            {"interactions": CONVERSATION, "user_message": "hi", "agent_response": "x"},
            "invalid input: interactions: give either interactions or user_message + "
            "agent_response, not both",
        ),
        (
            {"interactions": [{"role": "User", "contnt": "typo"}]},
            "invalid input: interactions[0].contnt: not a known field (did you mean 'content'?)",
        ),
        (
            {"interactions": [{"content": "x", "user_action": "wave"}]},
            "invalid input: interactions[0].user_action: must be one of 'click', 'scroll', "
            "'type' or 'none' (got 'wave')",
        ),
        ({"interactions": []}, "invalid input: interactions: must have at least 1 item (got 0)"),
        (
            {"interactions": [{"content": "ok"}, {"role": "User", "content": "  "}]},
            "invalid input: interactions[1]: empty turn: give content (or expert_content, "
            "tools_used, a user_action or an image); leave out turns with nothing in them",
        ),
        (
            {"user_message": " ", "agent_response": "\n"},
            "invalid input: user_message: empty; say what was said; agent_response: empty; say "
            "what was said",
        ),
        (
            {"user_message": "", "agent_response": ""},
            "invalid input: interactions: required; give interactions (a list of turns) or "
            "user_message and agent_response together",
        ),
        (
            {"interactions": [{"content": "x", "created_at": 253_402_300_800}]},
            "invalid input: interactions[0].created_at: must be between 0 and 253402300799 "
            "(got 253402300800)",
        ),
        (
            {"interactions": [{"content": "x", "created_at": 2**63}]},
            "invalid input: interactions[0].created_at: must be between 0 and 253402300799 "
            "(got 9223372036854775808)",
        ),
        (
            {"interactions": [{"content": "x", "created_at": -1}]},
            "invalid input: interactions[0].created_at: must be between 0 and 253402300799 "
            "(got -1)",
        ),
        (
            {"interactions": [{"content": "x", "created_at": 1_732_350_000_123}]},
            "invalid input: interactions[0].created_at: must be Unix seconds between 0 and "
            "253402300799; 1732350000123 looks like milliseconds: send 1732350000",
        ),
        (
            {"user_message": "a", "agent_response": "b", "session_id": "line\nbreak"},
            "invalid input: session_id: an id must not contain control characters (newlines, "
            "tabs, NUL)",
        ),
        (
            {"user_message": "a", "agent_response": "b", "user_id": "../etc"},
            "invalid input: user_id: a user id must not contain / or \\ or be . or .. (got "
            "'../etc')",
        ),
        (
            {"user_message": "a" * 1_000_001, "agent_response": "b"},
            "invalid input: user_message: must have at most 1,000,000 characters (got 1,000,001)",
        ),
        (
            {"interactions": [{"content": "x"}] * 1001},
            "invalid input: interactions: must have at most 1000 items (got 1001)",
        ),
    ],
)
async def test_publish_errors_name_the_field_and_the_fix(
    mcp: Client, user_id: str, arguments: dict[str, Any], expected: str
) -> None:
    arguments = {"user_id": user_id, **arguments}
    assert await error(mcp, "publish_interaction", arguments) == expected
    listed = await call(mcp, "get_interactions", {"user_id": user_id})
    assert listed["count"] == 0


async def test_publish_over_10_mib_is_refused_and_nothing_stored(mcp: Client, user_id: str) -> None:
    turns = [{"role": "User", "content": "y" * 900_000} for _ in range(12)]
    message = await error(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns})
    assert "at most 10 MiB per publish" in message
    assert (await call(mcp, "get_interactions", {"user_id": user_id}))["count"] == 0


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("get_interactions", {"top_k": 0}, "top_k: must be between 1 and 1000 (got 0)"),
        ("get_interactions", {"top_k": -1}, "top_k: must be between 1 and 1000 (got -1)"),
        ("search_interactions", {"top_k": 5000}, "top_k: must be between 1 and 1000 (got 5000)"),
        (
            "search_interactions",
            {"top_k": "ten"},
            "top_k: must be a whole number (got the string 'ten')",
        ),
        ("search_interactions", {"top_k": 2.5}, "top_k: must be a whole number (got 2.5)"),
        ("search_interactions", {"threshold": 2}, "threshold: must be at most 1.0 (got 2)"),
        (
            "search_interactions",
            {"search_mode": "magic"},
            "search_mode: must be one of 'vector', 'fts' or 'hybrid' (got 'magic')",
        ),
        (
            "search_interactions",
            {"start_time": "last week"},
            "start_time: must be an ISO 8601 time such as '2026-11-23T14:00:00Z' or '2026-11-23' "
            "(got 'last week')",
        ),
        (
            "search_interactions",
            {"query": "x" * 10_001},
            "query: must have at most 10,000 characters (got 10,001)",
        ),
        ("search_interactions", {"query": 5}, "query: must be a string (got 5)"),
        ("delete_interaction", {}, "interaction_id: required"),
        (
            "delete_interaction",
            {"interaction_id": 0},
            "interaction_id: must be between 1 and 9223372036854775807 (got 0)",
        ),
        (
            "delete_interaction",
            {"interaction_id": 2**63},
            "interaction_id: must be between 1 and 9223372036854775807 (got 9223372036854775808)",
        ),
        ("get_all_interactions", {"top_k": -1}, "top_k: must be between 1 and 1000 (got -1)"),
        (
            "get_interactions",
            {"user_id": "a\tb"},
            "user_id: a user id must not contain control characters (newlines, tabs, NUL)",
        ),
        (
            "get_interactions",
            {"user_id": " padded "},
            "user_id: a user id must not start or end with spaces (got ' padded ')",
        ),
    ],
)
async def test_bad_arguments_get_one_line_naming_the_field_and_the_fix(
    mcp: Client, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    assert await error(mcp, tool, arguments) == f"invalid input: {expected}"


async def test_several_bad_arguments_are_all_named(mcp: Client) -> None:
    message = await error(
        mcp, "search_interactions", {"top_k": 0, "search_mode": "magic", "start_time": "soon"}
    )
    assert message.startswith("invalid input: top_k: must be between 1 and 1000 (got 0); ")
    assert "search_mode: must be one of" in message
    assert "start_time: must be an ISO 8601 time" in message


@pytest.mark.parametrize(
    "window",
    [
        {"start_time": "0001-01-01T00:00:00+14:00"},
        {"end_time": "9999-12-31T23:59:59-14:00"},
        {"start_time": "0001-01-01T00:00:00+14:00", "end_time": "9999-12-31T23:59:59-14:00"},
        {"start_time": 0, "end_time": 10**30},
    ],
)
async def test_time_bounds_beyond_what_is_stored_mean_from_the_start_or_until_the_end(
    mcp: Client, user_id: str, window: dict[str, Any]
) -> None:
    await call(
        mcp, "publish_interaction", {"user_id": user_id, "user_message": "a", "agent_response": "b"}
    )
    for tool in ("get_interactions", "search_interactions"):
        found = await call(mcp, tool, {"user_id": user_id, **window})
        assert found["count"] == 2, tool


async def test_the_latest_storable_time_reads_back(mcp: Client, user_id: str) -> None:
    latest = {"content": "far future", "created_at": 253_402_300_799}
    earliest = {"content": "epoch", "created_at": 0}
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": [latest, earliest]})
    listed = await call(mcp, "get_interactions", {"user_id": user_id})
    assert [(i["content"], i["time"]) for i in listed["interactions"]] == [
        ("far future", "9999-12-31T23:59:59Z"),
        ("epoch", "1970-01-01T00:00:00Z"),
    ]
    found = await call(
        mcp, "search_interactions", {"user_id": user_id, "query": "future", "search_mode": "fts"}
    )
    assert found["count"] == 1
    deleted = await call(
        mcp,
        "delete_interaction",
        {
            "user_id": user_id,
            "interaction_id": listed["interactions"][0]["interaction_id"],
            "confirm": True,
        },
    )
    assert deleted["deleted"]["time"] == "9999-12-31T23:59:59Z"


async def test_a_request_id_given_twice_stores_once(mcp: Client, user_id: str) -> None:
    arguments = {
        "user_id": user_id,
        "user_message": "resent after a lost answer",
        "agent_response": "ok",
        "request_id": f"{user_id}-turn-1",
    }
    first = await call(mcp, "publish_interaction", arguments)
    second = await call(mcp, "publish_interaction", arguments)
    assert (first["stored"], first["already_stored"]) == (2, False)
    assert (second["stored"], second["already_stored"]) == (0, True)
    assert second["request_id"] == first["request_id"] == f"{user_id}-turn-1"
    assert second["message"] == (
        f"request_id '{user_id}-turn-1' was already stored by an earlier publish: nothing was "
        "stored twice"
    )
    assert (await call(mcp, "get_interactions", {"user_id": user_id}))["count"] == 2
    clash = await error(mcp, "publish_interaction", {**arguments, "user_id": f"{user_id}-other"})
    assert clash.startswith(
        f"invalid input: request_id: '{user_id}-turn-1' was already used by another publish"
    )
    assert (await call(mcp, "get_interactions", {"user_id": f"{user_id}-other"}))["count"] == 0


@pytest.mark.parametrize("query", ["✈️", '"', "!!!", "🍣 🍜", "—"])
async def test_a_query_without_words_matches_nothing(mcp: Client, user_id: str, query: str) -> None:
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "hi ✈️", "agent_response": "ho"},
    )
    found = await call(mcp, "search_interactions", {"user_id": user_id, "query": query})
    assert found["count"] == 0
    assert found["note"].startswith("the query has no words to search for")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("寿司", "東京で寿司を食べた"),
        ("寿", "東京で寿司を食べた"),
        ("食べた", "東京で寿司を食べた"),
        ("北京", "我昨天在北京吃了烤鸭"),
        ("烤鸭", "我昨天在北京吃了烤鸭"),
        ("비빔밥", "서울에서 비빔밥을 먹었다"),
        ("빔밥", "서울에서 비빔밥을 먹었다"),  # inside a spaced Korean word, not at its start
        ("에서", "서울에서 비빔밥을 먹었다"),
        ("司を", "東京で寿司を食べた"),
    ],
)
async def test_chinese_japanese_and_korean_are_found_inside_longer_runs(
    mcp: Client, user_id: str, query: str, expected: str
) -> None:
    turns = [
        {"content": "東京で寿司を食べた"},
        {"content": "我昨天在北京吃了烤鸭"},
        {"content": "서울에서 비빔밥을 먹었다"},
        {"content": "plain english"},
    ]
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns})
    found = await call(mcp, "search_interactions", {"user_id": user_id, "query": query})
    assert [i["content"] for i in found["interactions"]] == [expected]


async def test_a_query_of_thousands_of_words_is_bounded(mcp: Client, user_id: str) -> None:
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "a tale of alpha", "agent_response": "ok"},
    )
    # By words: in hybrid mode, whether "ok" also matches by meaning depends on whether the
    # background indexer has embedded it yet (it had, once, on CI).
    repeated = await call(
        mcp, "search_interactions", {"user_id": user_id, "query": "a " * 5000, "search_mode": "fts"}
    )
    assert repeated["count"] == 1
    assert repeated["note"] is None
    many = " ".join(f"word{n}" for n in range(100)) + " alpha"
    by_words = {"user_id": user_id, "query": many, "search_mode": "fts"}
    found = await call(mcp, "search_interactions", by_words)
    assert found["count"] == 0  # alpha is the 101st distinct word: left out, and said so
    assert found["note"] == (
        "the query has 101 distinct words; searched for the first 32 (word29 word30 word31 was "
        "the last). Search again with the others if they matter"
    )


async def test_reversed_time_window_is_explained(mcp: Client, user_id: str) -> None:
    message = await error(
        mcp,
        "get_interactions",
        {
            "user_id": user_id,
            "start_time": "2026-02-01T00:00:00Z",
            "end_time": "2026-01-01T00:00:00",
        },
    )
    assert "start_time is after end_time" in message


async def test_time_window_filters(mcp: Client, user_id: str) -> None:
    old = {"role": "User", "content": "ancient history", "created_at": 1_000_000_000}
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "interactions": [old, {"content": "today"}]},
    )
    recent = await call(
        mcp, "get_interactions", {"user_id": user_id, "start_time": "2020-01-01T00:00:00Z"}
    )
    assert [i["content"] for i in recent["interactions"]] == ["today"]
    early = await call(
        mcp, "get_interactions", {"user_id": user_id, "end_time": "2002-01-01T00:00:00"}
    )
    assert [i["content"] for i in early["interactions"]] == ["ancient history"]
    assert early["interactions"][0]["time"] == "2001-09-09T01:46:40Z"


async def test_get_all_interactions_spans_users(mcp: Client, user_id: str) -> None:
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "all", "agent_response": "users"},
    )
    everything = await call(mcp, "get_all_interactions", {"top_k": 1000})
    assert user_id in {i["user_id"] for i in everything["interactions"]}
    assert (await call(mcp, "get_all_interactions", {"top_k": 1}))["count"] == 1


async def test_an_admin_tool_that_is_off_says_how_to_turn_it_on(
    settings: Settings, kind: str
) -> None:
    without_admin = settings.model_copy(update={"allow_admin": False})
    async with Client(build_server(without_admin)) as client:
        message = await error(client, "get_all_interactions", {"top_k": 5})
        unknown = await error(client, "get_interaction", {})
    assert message == (
        "get_all_interactions is not enabled on this server: it reads every user's "
        "interactions, so it is off unless reflexio-mcp starts with --allow-admin (or "
        "REFLEXIO_MCP_ALLOW_ADMIN=1)"
    )
    learning = ("search_learnings, ", ", delete_learning") if kind == "reflexio" else ("", "")
    assert unknown == (
        "unknown tool 'get_interaction' (did you mean 'get_interactions'?); this server's tools: "
        "publish_interaction, publish_batch, get_publish_status, search_interactions, "
        f"get_interactions, {learning[0]}delete_interaction{learning[1]}"
    )


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    (content,) = result.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    return json.loads(content.text)


async def test_recent_resources(mcp: Client, user_id: str) -> None:
    resources = {str(r.uri) for r in (await mcp.list_resources()).resources}
    templates = {t.uri_template for t in (await mcp.list_resource_templates()).resource_templates}
    assert "reflexio://interactions/recent" in resources
    assert "reflexio://users/{user_id}/interactions" in templates

    long_text = "z" * 5000
    start = int(time.time()) - 1000
    turns = [{"content": f"turn {n}", "created_at": start + n} for n in range(25)]
    turns.append({"content": long_text})
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns})
    document = await read_json(mcp, f"reflexio://users/{user_id}/interactions")
    assert document["user_id"] == user_id
    assert document["count"] == 20
    contents = [i["content"] for i in document["interactions"]]
    assert contents[0].startswith("z" * 2000)
    assert "[cut: 3000 more characters" in contents[0]
    assert contents[1:] == [f"turn {n}" for n in range(24, 5, -1)]

    await call(
        mcp, "publish_interaction", {"user_message": "for the default user", "agent_response": "ok"}
    )
    recent = await read_json(mcp, "reflexio://interactions/recent")
    assert recent["user_id"] == DEFAULT_USER
    assert recent["count"] >= 2


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("..", "user_id: a user id must not contain / or \\ or be . or .. (got '..')"),
        ("a%2Fb", "user_id: a user id must not contain / or \\ or be . or .. (got 'a/b')"),
        ("%2E%2E", "user_id: a user id must not contain / or \\ or be . or .. (got '..')"),
        ("a%00b", "user_id: a user id must not contain control characters (newlines, tabs, NUL)"),
        ("x" * 300, "user_id: must have at most 256 characters (got 300)"),
    ],
)
async def test_resource_template_refuses_bad_user_ids_as_invalid_params(
    mcp: Client, bad: str, expected: str
) -> None:
    with pytest.raises(MCPError) as err:
        await mcp.read_resource(f"reflexio://users/{bad}/interactions")
    assert err.value.error.code == INVALID_PARAMS
    assert err.value.error.message == f"invalid input: {expected}"


@pytest.mark.parametrize("odd", ["a:b", "C:foo", "slack:U123", "ana@example.com", "a b"])
async def test_user_ids_that_look_like_paths_work_in_tools_and_resources_alike(
    mcp: Client, user_id: str, odd: str
) -> None:
    owner = f"{odd}-{user_id}"
    await call(
        mcp,
        "publish_interaction",
        {"user_id": owner, "user_message": "mine", "agent_response": "ok"},
    )
    document = await read_json(mcp, f"reflexio://users/{quote(owner, safe='@:')}/interactions")
    assert document["user_id"] == owner
    assert document["count"] == 2


async def test_publish_says_whether_learning_happens(mcp: Client, kind: str, user_id: str) -> None:
    published = await call(
        mcp, "publish_interaction", {"user_id": user_id, "user_message": "a", "agent_response": "b"}
    )
    if kind == "embedded":  # differs by design: only Reflexio learns
        assert "no learning happens here" in published["message"]
        assert published["learning"] == "unavailable / embedded store"
    else:
        assert "no learning" not in published["message"]


async def test_status_names_the_backend(mcp: Client, kind: str, settings: Settings) -> None:
    await call(mcp, "publish_interaction", {"user_message": "count me", "agent_response": "ok"})
    status = await read_json(mcp, "reflexio://status")
    assert status["backend"] == kind
    assert status["reachable"] is True
    assert status["learning"] is (kind == "reflexio")
    if kind == "embedded":
        assert status["location"] == str(settings.data_dir / "interactions.sqlite3")  # type: ignore[operator]
        assert (status["interactions"], status["user_interactions"]) == (2, 2)
    else:  # differs: counting would make Reflexio read every interaction of the user
        assert status["location"] == settings.url
        assert status["user_interactions"] is None


async def test_unicode_round_trips_and_is_searchable(mcp: Client, user_id: str) -> None:
    text = "Grüße aus Zürich — 東京で寿司 🍣, naïve café"
    await call(
        mcp, "publish_interaction", {"user_id": user_id, "interactions": [{"content": text}]}
    )
    listed = await call(mcp, "get_interactions", {"user_id": user_id})
    assert listed["interactions"][0]["content"] == text
    found = await call(mcp, "search_interactions", {"user_id": user_id, "query": "Zürich"})
    assert [i["content"] for i in found["interactions"]] == [text]


async def test_large_content_round_trips_whole(settings: Settings, user_id: str) -> None:
    big = "lorem ipsum " * 83_000  # ~1 MB, under the 1,000,000 characters a turn may hold
    big = big[:999_999]
    async with Client(build_server(settings)) as mcp:
        await call(
            mcp, "publish_interaction", {"user_id": user_id, "interactions": [{"content": big}]}
        )
        cut = await call(mcp, "get_interactions", {"user_id": user_id})
    assert len(cut["interactions"][0]["content"]) < settings.max_result_chars
    assert "REFLEXIO_MCP_MAX_RESULT_CHARS" in cut["note"]
    roomy = settings.model_copy(update={"max_result_chars": 3_000_000})
    async with Client(build_server(roomy)) as mcp:
        listed = await call(mcp, "get_interactions", {"user_id": user_id})
    assert listed["interactions"][0]["content"] == big


async def test_a_thousand_turns_in_one_publish_and_no_more(mcp: Client, user_id: str) -> None:
    turns = [{"content": f"turn {n}"} for n in range(1000)]
    published = await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns})
    assert published["stored"] == 1000
    pages = await all_pages(mcp, "get_interactions", {"user_id": user_id, "top_k": 1000})
    assert len(pages) > 1
    contents = [i["content"] for page in pages for i in page["interactions"]]
    assert sorted(contents) == sorted(turn["content"] for turn in turns)
    message = await error(
        mcp, "publish_interaction", {"user_id": user_id, "interactions": [*turns, {"content": "x"}]}
    )
    assert "interactions" in message


async def test_recent_is_newest_first_and_top_k_bounded(mcp: Client, user_id: str) -> None:
    start = int(time.time()) - 500
    turns = [{"content": f"step {n}", "created_at": start + n} for n in range(6)]
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns[::2]})
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns[1::2]})
    newest = await call(mcp, "get_interactions", {"user_id": user_id, "top_k": 4})
    assert [i["content"] for i in newest["interactions"]] == [
        "step 5",
        "step 4",
        "step 3",
        "step 2",
    ]
    searched = await call(mcp, "search_interactions", {"user_id": user_id, "most_recent_k": 3})
    assert [i["content"] for i in searched["interactions"]] == ["step 5", "step 4", "step 3"]
    # With a query, most_recent_k keeps the k best matches and orders them newest first.
    matching = await call(
        mcp, "search_interactions", {"user_id": user_id, "query": "step", "most_recent_k": 2}
    )
    times = [i["created_at"] for i in matching["interactions"]]
    assert len(times) == 2
    assert times == sorted(times, reverse=True)
    no_query = await call(mcp, "search_interactions", {"user_id": user_id, "top_k": 2})
    assert [i["content"] for i in no_query["interactions"]] == ["step 5", "step 4"]


async def test_search_by_request_id(mcp: Client, user_id: str) -> None:
    first = await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "apples", "agent_response": "ok"},
    )
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "apples too", "agent_response": "ok"},
    )
    found = await call(
        mcp,
        "search_interactions",
        {
            "user_id": user_id,
            "query": "apples",
            "request_id": first["request_id"],
            "search_mode": "fts",
        },
    )
    assert [i["content"] for i in found["interactions"]] == ["apples"]


async def test_users_do_not_see_each_other(mcp: Client, user_id: str) -> None:
    other = f"{user_id}-other"
    await call(
        mcp,
        "publish_interaction",
        {"user_id": other, "user_message": "secret plan", "agent_response": "ok"},
    )
    assert (await call(mcp, "get_interactions", {"user_id": user_id}))["count"] == 0
    found = await call(mcp, "search_interactions", {"user_id": user_id, "query": "secret plan"})
    assert found["count"] == 0


async def test_fts_syntax_in_a_query_is_just_words(mcp: Client, user_id: str) -> None:
    await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "quote me", "agent_response": "ok"},
    )
    for query in ['"unbalanced', "NEAR(quote", "quote*", "content:quote", "a AND OR NOT", "(", "-"]:
        result = await mcp.call_tool("search_interactions", {"user_id": user_id, "query": query})
        assert not result.is_error, (query, text(result))


async def test_expert_content_is_searchable_only_on_the_embedded_store(
    mcp: Client, kind: str, user_id: str
) -> None:
    turn = {"content": "The answer was fine.", "expert_content": "Mention the warranty clause."}
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": [turn]})
    found = await call(mcp, "search_interactions", {"user_id": user_id, "query": "warranty"})
    # Differs: Reflexio 0.2.32 indexes content and user_action_description only.
    assert found["count"] == (1 if kind == "embedded" else 0)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        (
            "get_interactions",
            {"limit": 5},
            "limit: not an argument of get_interactions (did you mean 'top_k'?)",
        ),
        (
            "publish_interaction",
            {"usr_id": "x"},
            "usr_id: not an argument of publish_interaction (did you mean 'user_id'?)",
        ),
        ("search_interactions", {"querry": "x"}, "(did you mean 'query'?)"),
    ],
)
async def test_unknown_arguments_are_refused_not_ignored(
    mcp: Client, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    message = await error(mcp, tool, arguments)
    assert expected in message
    assert f"{tool} takes: " in message


async def test_fractional_time_bounds_respect_whole_second_storage(
    mcp: Client, user_id: str
) -> None:
    turns = [{"content": "at 1000", "created_at": 1000}, {"content": "at 1001", "created_at": 1001}]
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns})
    half = "1970-01-01T00:16:40.500Z"  # 1000.5
    for tool in ("get_interactions", "search_interactions"):
        after = await call(mcp, tool, {"user_id": user_id, "start_time": half})
        before = await call(mcp, tool, {"user_id": user_id, "end_time": half})
        assert [i["content"] for i in after["interactions"]] == ["at 1001"], tool
        assert [i["content"] for i in before["interactions"]] == ["at 1000"], tool


async def test_searches_keep_to_their_time_window(mcp: Client, user_id: str) -> None:
    turns = [{"content": f"alpha step {n}", "created_at": 1000 + n} for n in range(30)]
    await call(mcp, "publish_interaction", {"user_id": user_id, "interactions": turns})
    early = {"user_id": user_id, "end_time": "1970-01-01T00:16:45Z"}  # 1005
    newest_early = await call(mcp, "search_interactions", {**early, "most_recent_k": 3})
    assert [i["created_at"] for i in newest_early["interactions"]] == [1005, 1004, 1003]
    matching_early = await call(mcp, "search_interactions", {**early, "query": "alpha"})
    assert matching_early["count"] > 0
    assert all(i["created_at"] <= 1005 for i in matching_early["interactions"])
    late = {"user_id": user_id, "start_time": "1970-01-01T00:17:05Z", "query": "alpha"}  # 1025
    matching_late = await call(mcp, "search_interactions", late)
    assert matching_late["count"] > 0
    assert all(i["created_at"] >= 1025 for i in matching_late["interactions"])


@pytest.mark.parametrize("word", ["null", "true", "false", "[1]", '{"a": 1}', "12"])
async def test_text_that_looks_like_json_is_kept_as_text(
    mcp: Client, user_id: str, word: str
) -> None:
    owner = f"{user_id}-{word}" if word != "null" else word
    published = await call(
        mcp,
        "publish_interaction",
        {"user_id": owner, "user_message": word, "agent_response": "ok", "session_id": word},
    )
    assert (published["user_id"], published["session_id"]) == (owner, word)
    found = await call(mcp, "search_interactions", {"user_id": owner, "query": word})
    assert word in [i["content"] for i in found["interactions"]]


async def test_errors_stay_short_however_many_problems(mcp: Client, user_id: str) -> None:
    unknown = await error(mcp, "get_interactions", {f"x{n}": 1 for n in range(20_000)})
    assert unknown.startswith("invalid input: x0: not an argument of get_interactions; x1: ")
    assert "(and 19990 more): not an argument" in unknown
    empty = await error(
        mcp, "publish_interaction", {"user_id": user_id, "interactions": [{"role": "User"}] * 1000}
    )
    assert empty.endswith("; and 990 more problems like these")
    assert max(len(unknown), len(empty)) < 3000


async def test_publish_status_follows_a_publish(mcp: Client, user_id: str) -> None:
    published = await call(
        mcp,
        "publish_interaction",
        {"user_id": user_id, "user_message": "status?", "agent_response": "delivered"},
    )
    assert published["status"] == "stored"
    mine = {"user_id": user_id, "request_id": published["request_id"]}
    status = await call(mcp, "get_publish_status", mine)
    assert (status["status"], status["turns"], status["request_id"]) == (
        "delivered",
        2,
        published["request_id"],
    )
    assert status["delivered_at"] is not None
    for unknown in ({**mine, "user_id": f"{user_id}-other"}, {**mine, "request_id": "never-sent"}):
        answer = await call(mcp, "get_publish_status", unknown)
        assert answer["status"] == "unknown"
        assert "no publish with request_id" in answer["detail"]
    missing = await error(mcp, "get_publish_status", {"user_id": user_id})
    assert missing.startswith("invalid input: request_id:")


# -- sessions: the session template, resources/list and completions ---------------------------


async def test_the_session_template_reads_one_sessions_turns_oldest_first(
    mcp: Client, user_id: str
) -> None:
    start = int(time.time()) - 100
    trip = [{"content": f"trip {n}", "created_at": start + n} for n in range(3)]
    later = [{"content": "trip 3", "created_at": start + 10}]
    for session_id, turns, owner in [
        ("trip/1", trip, user_id),
        ("trip/1", later, user_id),
        ("work", [{"content": "work", "created_at": start + 5}], user_id),
        ("trip/1", [{"content": "not mine", "created_at": start + 6}], f"{user_id}-other"),
    ]:
        arguments = {"user_id": owner, "session_id": session_id, "interactions": turns}
        await call(mcp, "publish_interaction", arguments)
    document = await read_json(mcp, f"reflexio://users/{user_id}/sessions/trip%2F1")
    assert (document["user_id"], document["session_id"], document["order"]) == (
        user_id,
        "trip/1",
        "oldest first",
    )
    assert [i["content"] for i in document["interactions"]] == [f"trip {n}" for n in range(4)]
    assert (document["count"], document["truncated"]) == (4, False)
    never = await read_json(mcp, f"reflexio://users/{user_id}/sessions/never")
    assert (never["count"], never["interactions"]) == (0, [])


async def test_resources_list_shows_the_callers_sessions_latest_first(
    settings: Settings, user_id: str, kind: str
) -> None:
    own = settings.model_copy(update={"user_id": user_id, "pin_user": True})
    async with Client(build_server(own)) as client:
        for name in ("s-a", "s-b", "s-c"):
            arguments = {"session_id": name, "user_message": name, "agent_response": "ok"}
            await call(client, "publish_interaction", arguments)
        listed = await client.list_resources()
    uris = [str(r.uri) for r in listed.resources]
    static = ["reflexio://status", "reflexio://interactions/recent"]
    if kind == "reflexio":  # the agent's playbooks: what Reflexio learned across users
        static.append("reflexio://playbooks/agent")
    assert uris == [
        *static,
        *(f"reflexio://users/{user_id}/sessions/{name}" for name in ("s-c", "s-b", "s-a")),
    ]
    assert listed.next_cursor is None
    sessions = listed.resources[len(static) :]
    assert all((r.description or "").startswith("2 turn(s) of user") for r in sessions)


async def test_completions_offer_the_known_user_and_session_ids(mcp: Client, user_id: str) -> None:
    for name in ("alpha-1", "alpha-2", "beta"):
        arguments = {
            "user_id": user_id,
            "session_id": name,
            "user_message": "x",
            "agent_response": "y",
        }
        await call(mcp, "publish_interaction", arguments)
    template = ResourceTemplateReference(uri="reflexio://users/{user_id}/sessions/{session_id}")
    sessions = await mcp.complete(
        template, {"name": "session_id", "value": "alpha"}, {"user_id": user_id}
    )
    assert sessions.completion.values == ["alpha-2", "alpha-1"]
    assert (sessions.completion.total, sessions.completion.has_more) == (2, False)
    users = await mcp.complete(
        PromptReference(name="recall"), {"name": "user_id", "value": user_id}
    )
    assert users.completion.values == [user_id]
