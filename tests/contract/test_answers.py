"""What a search answer carries, the same on both backends (in process, SDK Client(server)):
each hit's session, the turns around each hit when asked for (marked as context, never a hit,
each once, within the result budget), the mode the store ran, and a text that says the same
as the structured result in a few characters."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings
from tests.support.recording_proxy import RecordingProxy
from tests.support.reflexio_server import RunningServer
from tests.support.tool_calls import call, error, text

BUDGET = 3_000


@pytest.fixture(params=["embedded", "reflexio"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if kind == "reflexio":
        reflexio: RunningServer = request.getfixturevalue("reflexio")
        return Settings(url=reflexio.url, data_dir=tmp_path)
    return Settings(backend="embedded", data_dir=tmp_path)


@pytest.fixture
async def mcp(settings: Settings) -> AsyncGenerator[Client]:
    async with Client(build_server(settings)) as client:
        yield client


async def publish_session(
    client: Client, user_id: str, session_id: str, contents: list[str], start: int
) -> None:
    turns = [
        {"role": "User" if n % 2 == 0 else "Agent", "content": content, "created_at": start + n}
        for n, content in enumerate(contents)
    ]
    arguments = {"user_id": user_id, "session_id": session_id, "interactions": turns}
    await call(client, "publish_interaction", arguments)


async def search(client: Client, arguments: dict[str, Any]) -> tuple[dict[str, Any], str]:
    result = await client.call_tool("search_interactions", arguments)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content, text(result)


def lines_of(answer_text: str) -> list[dict[str, Any]]:
    """The turns' lines of an answer's text (JSON Lines, the answer's own line first)."""
    return [json.loads(line) for line in answer_text.split("\n")[1:]]


SESSION = [f"step {n} of the bake" for n in range(7)]
SESSION[3] = "the zeppelin cake came out flat"


async def test_hits_carry_their_session(mcp: Client, user_id: str) -> None:
    start = int(time.time()) - 1000
    await publish_session(mcp, user_id, "trip", ["Lisbon in May", "flights to Lisbon"], start)
    await publish_session(mcp, user_id, "work", ["the Lisbon office opens"], start + 10)
    found, answer_text = await search(mcp, {"user_id": user_id, "query": "Lisbon"})
    sessions = {hit["content"]: hit["session_id"] for hit in found["interactions"]}
    assert sessions == {
        "Lisbon in May": "trip",
        "flights to Lisbon": "trip",
        "the Lisbon office opens": "work",
    }
    shown = {line["content"]: line["session_id"] for line in lines_of(answer_text)}
    assert shown == sessions


async def test_the_text_says_what_the_structured_result_holds(mcp: Client, user_id: str) -> None:
    start = int(time.time()) - 1000
    await publish_session(mcp, user_id, "s", ['a "quoted"\nzeppelin', "zeppelin again"], start)
    found, answer_text = await search(mcp, {"user_id": user_id, "query": "zeppelin"})
    assert json.loads(answer_text.split("\n")[0])["user_id"] == user_id
    lines = lines_of(answer_text)
    assert len(lines) == found["count"] == 2
    for hit, line in zip(found["interactions"], lines, strict=True):
        assert {key: hit[key] for key in line} == line  # the same values, fewer of them
        scored: set[str] = {"score"} if hit["score"] is not None else set()  # embedded
        assert set(line) == {"interaction_id", "session_id", "time", "role", "content", *scored}


async def test_context_shows_the_turns_around_each_hit(mcp: Client, user_id: str) -> None:
    start = int(time.time()) - 1000
    await publish_session(mcp, user_id, "bake", SESSION, start)
    # Another session's turns, at the same times: never context of a hit in "bake".
    await publish_session(mcp, user_id, "other", [f"noise {n}" for n in range(7)], start)
    plain, _ = await search(mcp, {"user_id": user_id, "query": "zeppelin"})
    assert plain["context"] == []
    found, answer_text = await search(mcp, {"user_id": user_id, "query": "zeppelin", "context": 2})
    [hit] = found["interactions"]
    assert hit["content"] == SESSION[3]
    assert [turn["content"] for turn in found["context"]] == SESSION[1:3] + SESSION[4:6]
    assert {turn["context_of"] for turn in found["context"]} == {hit["interaction_id"]}
    assert {turn["session_id"] for turn in found["context"]} == {"bake"}
    assert found["count"] == 1
    lines = lines_of(answer_text)
    assert [line.get("context_of") for line in lines] == [None, *[hit["interaction_id"]] * 4]
    assert [line["content"] for line in lines] == [SESSION[3], *SESSION[1:3], *SESSION[4:6]]
    edge, _ = await search(mcp, {"user_id": user_id, "query": "zeppelin", "context": 3})
    assert [turn["content"] for turn in edge["context"]] == SESSION[0:3] + SESSION[4:7]


async def test_context_never_shows_a_hit_nor_a_turn_twice(mcp: Client, user_id: str) -> None:
    contents = [f"step {n} of the bake" for n in range(7)]
    contents[2], contents[4] = "zeppelin one", "zeppelin two"
    await publish_session(mcp, user_id, "bake", contents, int(time.time()) - 1000)
    found, _ = await search(mcp, {"user_id": user_id, "query": "zeppelin", "context": 1})
    hits = {hit["content"]: hit["interaction_id"] for hit in found["interactions"]}
    assert set(hits) == {"zeppelin one", "zeppelin two"}
    shown = [turn["content"] for turn in found["context"]]
    assert sorted(shown) == [contents[1], contents[3], contents[5]]  # step 3 once, no hit
    best = found["interactions"][0]["interaction_id"]
    by_content = {turn["content"]: turn["context_of"] for turn in found["context"]}
    assert by_content[contents[3]] == best  # next to both: shown with the better hit
    assert by_content[contents[1]] == hits["zeppelin one"]
    assert by_content[contents[5]] == hits["zeppelin two"]


async def test_context_fits_the_result_budget_page_by_page(
    settings: Settings, user_id: str
) -> None:
    small = settings.model_copy(update={"max_result_chars": BUDGET})
    contents = [f"turn {n} " + "x" * 80 + (" zeppelin" if n % 3 == 1 else "") for n in range(18)]
    async with Client(build_server(small)) as client:
        await publish_session(client, user_id, "long", contents, int(time.time()) - 1000)
        arguments: dict[str, Any] = {"user_id": user_id, "query": "zeppelin", "context": 1}
        pages = [await search(client, arguments)]
        while pages[-1][0]["next_cursor"]:
            pages.append(await search(client, {"cursor": pages[-1][0]["next_cursor"]}))
    assert len(pages) > 1
    hits = [hit["content"] for found, _ in pages for hit in found["interactions"]]
    assert sorted(hits) == sorted(c for c in contents if "zeppelin" in c)
    for found, answer_text in pages:
        assert len(answer_text) <= BUDGET
        assert len(json.dumps(found, indent=2)) <= BUDGET
        # Each page's hits come with their context, the cursor's pages too.
        assert {turn["context_of"] for turn in found["context"]} == {
            hit["interaction_id"] for hit in found["interactions"]
        }


@pytest.mark.parametrize("bad", [-1, 4, "two"])
async def test_context_is_0_to_3_turns(mcp: Client, bad: object) -> None:
    message = await error(mcp, "search_interactions", {"query": "x", "context": bad})
    assert message.startswith("invalid input: context:")


async def test_search_says_the_mode_it_ran(mcp: Client, kind: str, user_id: str) -> None:
    await publish_session(mcp, user_id, "s", ["zeppelin"], int(time.time()) - 1000)
    found, answer_text = await search(
        mcp, {"user_id": user_id, "query": "zeppelin", "search_mode": "vector"}
    )
    header = json.loads(answer_text.split("\n")[0])
    if kind == "embedded":
        assert found["search_mode_effective"] in ("fts", "vector", "hybrid")
        if found["search_mode_effective"] != "vector":  # said only when not as asked
            assert header["search_mode_effective"] == found["search_mode_effective"]
    else:  # differs: Reflexio 0.2.32 does not say which mode it ran
        assert found["search_mode_effective"] is None
        assert "search_mode_effective" not in header


async def test_reflexio_is_asked_each_publishs_session_once(
    reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    with RecordingProxy(reflexio.url) as proxy:
        async with Client(build_server(Settings(url=proxy.url, data_dir=tmp_path))) as client:
            start = int(time.time()) - 1000
            await publish_session(client, user_id, "one", ["zeppelin a", "zeppelin b"], start)
            await publish_session(client, user_id, "two", ["zeppelin c"], start + 10)
            before = proxy.mark()
            first, _ = await search(client, {"user_id": user_id, "query": "zeppelin"})
            asked = [r.json() for r in proxy.since(before) if r.path == "/api/get_requests"]
            again = proxy.mark()
            second, _ = await search(client, {"user_id": user_id, "query": "zeppelin"})
            repeated = [r for r in proxy.since(again) if r.path == "/api/get_requests"]
    assert {hit["session_id"] for hit in first["interactions"]} == {"one", "two"}
    assert len(asked) == 2  # one per publish, by its request_id
    assert all(body["user_id"] == user_id and body["request_id"] for body in asked)
    assert repeated == []  # a publish's session never changes: remembered
    assert second["interactions"] == first["interactions"]
