"""Bounded results, in process: every listing fits the size budget, says `truncated` and carries
a cursor that fetches the rest (no turn lost or repeated, whatever is published between pages,
on the embedded store and on the real Reflexio), cursors are checked like arguments, and one
turn larger than the budget is cut and says so."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from reflexio_mcp.app import build_server
from reflexio_mcp.core.models import GetRequest, Keyset
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.paging import make_cursor
from tests.support.reflexio_server import RunningServer

BUDGET = 3_000
START = Keyset(last_created=9, last_id=5, floor_created=0, floor_id=1, max_id=5)


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncGenerator[Client]:
    settings = Settings(
        backend="embedded", data_dir=tmp_path, max_result_chars=BUDGET, allow_admin=True
    )
    async with Client(build_server(settings)) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


def raw_cursor(payload: object) -> str:
    """A cursor as the server makes them (compressed JSON), around any payload."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return "z" + base64.urlsafe_b64encode(zlib.compress(text.encode())).decode()


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert len(text_of(result)) <= BUDGET + 200  # the JSON the model reads
    return result.structured_content


async def pages(client: Client, tool: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    listing = [await call(client, tool, arguments)]
    while listing[-1]["next_cursor"]:
        assert listing[-1]["truncated"]
        assert "call again with cursor" in listing[-1]["note"]
        listing.append(await call(client, tool, {"cursor": listing[-1]["next_cursor"]}))
    assert not listing[-1]["truncated"]
    return listing


async def publish_turns(client: Client, count: int, user_id: str = "ann") -> list[str]:
    start = int(time.time()) - 10_000
    turns = [
        {"content": f"turn {n:03} about gardening " + "x" * 200, "created_at": start + n}
        for n in range(count)
    ]
    await call(client, "publish_interaction", {"user_id": user_id, "interactions": turns})
    return [str(turn["content"]) for turn in turns]


async def test_get_interactions_pages_through_everything_newest_first(mcp: Client) -> None:
    published = await publish_turns(mcp, 40)
    listing = await pages(mcp, "get_interactions", {"user_id": "ann", "top_k": 40})
    assert len(listing) > 2
    seen = [turn["content"] for page in listing for turn in page["interactions"]]
    assert seen == published[::-1]
    assert all(page["count"] == len(page["interactions"]) for page in listing)


async def test_later_publishes_do_not_shift_the_pages(mcp: Client) -> None:
    published = await publish_turns(mcp, 30)
    first = await call(mcp, "get_interactions", {"user_id": "ann", "top_k": 30})
    await call(
        mcp,
        "publish_interaction",
        {"user_id": "ann", "user_message": "new", "agent_response": "turn"},
    )
    rest = await pages(mcp, "get_interactions", {"cursor": first["next_cursor"]})
    seen = [t["content"] for page in [first, *rest] for t in page["interactions"]]
    assert seen == published[::-1]


async def test_search_pages_keep_the_ranking(mcp: Client) -> None:
    await publish_turns(mcp, 30)
    listing = await pages(
        mcp, "search_interactions", {"user_id": "ann", "query": "gardening", "top_k": 30}
    )
    assert len(listing) > 2
    ids = [t["interaction_id"] for page in listing for t in page["interactions"]]
    assert len(ids) == 30 == len(set(ids))


async def test_get_all_interactions_pages_too(mcp: Client) -> None:
    await publish_turns(mcp, 15, "ann")
    await publish_turns(mcp, 15, "bob")
    listing = await pages(mcp, "get_all_interactions", {"top_k": 30})
    users = [t["user_id"] for page in listing for t in page["interactions"]]
    assert sorted(users) == ["ann"] * 15 + ["bob"] * 15


async def test_a_small_listing_is_whole(mcp: Client) -> None:
    await publish_turns(mcp, 2)
    listed = await call(mcp, "get_interactions", {"user_id": "ann"})
    assert (listed["count"], listed["truncated"], listed["next_cursor"]) == (2, False, None)


async def test_a_cut_turn_keeps_the_start_of_what_was_said(mcp: Client) -> None:
    said = "The lease ends on March 31; " + "details " * 2_000
    noise = {"tool_name": "dump", "tool_data": {"output": "y" * 20_000}}
    await call(
        mcp,
        "publish_interaction",
        {"user_id": "ann", "interactions": [{"content": said, "tools_used": [noise]}]},
    )
    (turn,) = (await call(mcp, "get_interactions", {"user_id": "ann"}))["interactions"]
    assert turn["content"].startswith(said[:100])
    assert turn["content"].endswith("more characters]")


async def test_one_turn_larger_than_the_budget_is_cut_and_says_so(mcp: Client) -> None:
    big = "word " * 5_000
    tool = {"tool_name": "grep", "tool_data": {"output": "line\n" * 3_000}}
    await call(
        mcp,
        "publish_interaction",
        {"user_id": "ann", "interactions": [{"content": big, "tools_used": [tool]}]},
    )
    listed = await call(mcp, "get_interactions", {"user_id": "ann"})
    (turn,) = listed["interactions"]
    assert turn["content"].startswith("word word")
    assert "more characters]" in json.dumps(turn)
    assert f"interaction(s) {turn['interaction_id']} was cut" in listed["note"]
    assert listed["truncated"] is False


@pytest.mark.parametrize(
    ("tool", "cursor"),
    [
        ("get_interactions", "not a cursor"),
        ("search_interactions", make_cursor("get_interactions", GetRequest(user_id="ann"), START)),
        (
            "get_interactions",
            raw_cursor(
                {
                    "tool": "get_interactions",
                    "request": {"user_id": "ann"},
                    "position": {**START.model_dump(), "max_id": "5"},
                }
            ),
        ),
        (
            "get_interactions",
            raw_cursor(
                {"tool": "get_interactions", "request": {"user_id": "ann", "top_k": 5000}}
                | {"position": START.model_dump()}
            ),
        ),
        ("get_interactions", raw_cursor("[" * 50_000)),
        ("get_all_interactions", "e30"),
    ],
)
async def test_a_cursor_not_given_by_the_tool_is_refused_in_words(
    mcp: Client, tool: str, cursor: str
) -> None:
    result = await mcp.call_tool(tool, {"cursor": cursor})
    assert result.is_error
    assert text_of(result) == (
        f"invalid input: cursor: not a next_cursor that {tool} gave; pass next_cursor exactly "
        "as it came, or call again without cursor"
    )


async def test_a_cursor_cannot_read_another_users_turns(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path, user_id="ann", pin_user=True)
    bobs = make_cursor("get_interactions", GetRequest(user_id="bob"), START)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("get_interactions", {"cursor": bobs})
    assert result.is_error
    assert text_of(result).startswith(
        "invalid input: cursor: it continues user 'bob''s listing, not this caller's"
    )


# --- turns published between pages take no slot of the listing (issue 16, item 5) ----------


@pytest.fixture(params=["embedded", "reflexio"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of the backend under test: the embedded store, or the real Reflexio."""
    if request.param == "reflexio":
        name = "lone_reflexio" if "all" in request.node.name else "reflexio"
        server: RunningServer = request.getfixturevalue(name)
        return Settings(url=server.url, data_dir=tmp_path, allow_admin=True)
    return Settings(backend="embedded", data_dir=tmp_path, allow_admin=True)


@pytest.fixture
async def paged_and_whole(
    backend_settings: Settings,
) -> AsyncGenerator[tuple[Client, Client]]:
    """Two servers on one backend: one pages at BUDGET, the other shows any listing whole."""
    small = backend_settings.model_copy(update={"max_result_chars": BUDGET})
    large = backend_settings.model_copy(update={"max_result_chars": 10_000_000})
    async with Client(build_server(small)) as paged, Client(build_server(large)) as whole:
        yield paged, whole


LATEST = 10_000_000_000
"""get_all_interactions tests stamp their turns from here on: later than any other test's."""
_stamp = iter(range(10**6))


def stamped(count: int, text: str, start: int) -> list[dict[str, Any]]:
    return [
        {"content": f"{text} {n:03} " + "x" * 200, "created_at": start + n} for n in range(count)
    ]


async def follow(client: Client, tool: str, first: dict[str, Any]) -> list[int]:
    """The ids of a listing's first page and of every page its cursors lead to."""
    listing = [first, *(await pages(client, tool, {"cursor": first["next_cursor"]}))]
    return [turn["interaction_id"] for page in listing for turn in page["interactions"]]


async def whole_ids(client: Client, tool: str, arguments: dict[str, Any]) -> list[int]:
    """The ids of a listing shown whole (by the server without a small budget)."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert not result.structured_content["truncated"]
    return [turn["interaction_id"] for turn in result.structured_content["interactions"]]


async def store(client: Client, user_id: str, turns: list[dict[str, Any]]) -> None:
    result = await client.call_tool(
        "publish_interaction", {"user_id": user_id, "interactions": turns}
    )
    assert not result.is_error, text_of(result)


async def test_an_import_of_past_turns_between_pages_takes_no_slot_of_the_listing(
    paged_and_whole: tuple[Client, Client], user_id: str
) -> None:
    """Imported turns with past times sort among those listed: re-running the query took their
    slots, skipping 20 of 30 turns, and next_cursor ended as if the listing were complete."""
    paged, whole = paged_and_whole
    start = int(time.time()) - 100_000
    await store(whole, user_id, stamped(30, "turn", start))
    expected = await whole_ids(whole, "get_interactions", {"user_id": user_id, "top_k": 30})
    first = await call(paged, "get_interactions", {"user_id": user_id, "top_k": 30})
    assert first["truncated"]
    await store(whole, user_id, stamped(20, "imported", start))
    assert await follow(paged, "get_interactions", first) == expected


@pytest.mark.parametrize("count", ["top_k", "most_recent_k"])
async def test_better_matches_published_between_pages_take_no_slot_of_the_search(
    paged_and_whole: tuple[Client, Client], user_id: str, count: str
) -> None:
    """New turns that match better rank first: re-running the search gave them the slots of
    the turns not yet shown (25 of 30 skipped)."""
    paged, whole = paged_and_whole
    weak = [{"content": f"gardening {n:03} " + "filler " * 40} for n in range(30)]
    await store(whole, user_id, weak)
    search = {"user_id": user_id, "query": "gardening", count: 30}
    expected = await whole_ids(whole, "search_interactions", search)
    first = await call(paged, "search_interactions", search)
    assert first["truncated"]
    strong = [{"content": "gardening gardening gardening"} for _ in range(25)]
    await store(whole, user_id, strong)
    assert await follow(paged, "search_interactions", first) == expected


async def test_another_users_turns_between_pages_take_no_slot_of_get_all(
    paged_and_whole: tuple[Client, Client], user_id: str
) -> None:
    """Another user's turns, newer or as old as those listed, took the slots of the turns of
    get_all_interactions not yet shown (20 of 30 skipped)."""
    paged, whole = paged_and_whole
    start = LATEST + 1_000 * next(_stamp)  # later than any other test's turns
    await store(whole, user_id, stamped(30, "turn", start))
    expected = await whole_ids(whole, "get_all_interactions", {"top_k": 30})
    first = await call(paged, "get_all_interactions", {"top_k": 30})
    assert first["truncated"]
    others = [*stamped(10, "other", start), *stamped(10, "newer", start + 100)]
    await store(whole, f"{user_id}-b", others)
    assert await follow(paged, "get_all_interactions", first) == expected


async def test_the_newest_of_turns_stored_in_one_second_are_the_latest_stored(
    paged_and_whole: tuple[Client, Client], user_id: str
) -> None:
    """Reflexio keeps whole seconds and cuts its newest top_k inside a second at the OLDER ids:
    "the newest 10" of 30 turns stored in one second were the first 10 stored, and a listing's
    oldest turn (where its keyset ends) was not the oldest of what it left out."""
    _, whole = paged_and_whole
    when = int(time.time()) - 50_000
    await store(
        whole, user_id, [{"content": f"same second {n}", "created_at": when} for n in range(30)]
    )
    everything = await whole_ids(whole, "get_interactions", {"user_id": user_id, "top_k": 30})
    newest = await whole_ids(whole, "get_interactions", {"user_id": user_id, "top_k": 10})
    assert newest == everything[:10] == sorted(everything, reverse=True)[:10]


async def test_the_newest_of_all_users_turns_in_one_second_are_the_latest_stored(
    paged_and_whole: tuple[Client, Client], user_id: str
) -> None:
    """The same holds for get_all_interactions: Reflexio orders it by created_at alone, and
    the bridge does not rely on how it breaks ties (a contract check, not a regression)."""
    _, whole = paged_and_whole
    when = LATEST + 1_000 * next(_stamp)
    await store(
        whole, user_id, [{"content": f"same second {n}", "created_at": when} for n in range(30)]
    )
    everything = await whole_ids(whole, "get_all_interactions", {"top_k": 30})
    newest = await whole_ids(whole, "get_all_interactions", {"top_k": 10})
    assert newest == everything[:10] == sorted(everything, reverse=True)[:10]
