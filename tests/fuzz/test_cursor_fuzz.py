"""Fuzzing cursors, of the tools and of resources/list, in process on the embedded store: a
cursor the tool did not give is refused in words naming `cursor` (resources/list: as
INVALID_PARAMS); a pinned caller's cursor never lists another user's turns.

The first tests are minimal reproductions of faults this fuzzing found.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from reflexio_mcp.app import build_server
from reflexio_mcp.core.models import GetRequest, Keyset
from reflexio_mcp.surface.paging import Position, Unshown, make_cursor
from reflexio_mcp.surface.resources import make_cursor as make_list_cursor
from tests.support.surface_fuzzing import (
    AT_START,
    JSON,
    OTHER,
    PINNED,
    TOOLS,
    Args,
    call,
    clean,
    client_of,
    examples,
    harness,
    invalid_params,
    ok,
    packed,
    raw_cursor,
    settings,
    text_of,
)

# ========================================================================================
# Minimal reproductions of the faults found (each fails until fixed)
# ========================================================================================

DEEP_CURSOR = base64.urlsafe_b64encode(b"[" * 50_000).decode().rstrip("=")
"""A cursor that decodes to JSON nested 50,000 deep: json.loads raises RecursionError, which
is not the ValueError read_cursor catches."""


@pytest.mark.parametrize("tool", TOOLS)
async def test_a_deeply_nested_cursor_is_refused_in_words(tmp_path: Path, tool: str) -> None:
    async with Client(build_server(settings(tmp_path, allow_admin=True))) as client:
        result = await client.call_tool(tool, {"cursor": packed(b"[" * 50_000)})
    assert result.is_error
    assert text_of(result).startswith("invalid input: cursor: "), text_of(result)


async def test_a_deeply_nested_resources_list_cursor_is_invalid_params(tmp_path: Path) -> None:
    async with Client(build_server(settings(tmp_path))) as client:
        with pytest.raises(MCPError) as refused:
            await client.list_resources(cursor=DEEP_CURSOR, cache_mode="bypass")
    assert refused.value.error.code == INVALID_PARAMS, refused.value.error.message
    assert "cursor" in refused.value.error.message


@pytest.mark.parametrize(
    "cursor",
    [
        raw_cursor(
            {"tool": "get_interactions", "request": {"user_id": "ann", "top_k": 5000}, **AT_START}
        ),
        raw_cursor({"tool": "get_interactions", "request": {"user_id": "a/b"}, **AT_START}),
        raw_cursor({"tool": "get_interactions", "request": {"user_id": "ann", "x": 1}, **AT_START}),
    ],
    ids=["top_k", "user_id", "unknown-field"],
)
async def test_a_cursor_carrying_a_bad_request_is_refused_as_a_bad_cursor(
    tmp_path: Path, cursor: str
) -> None:
    """The caller passed only `cursor`: an error naming top_k or user_id sends it looking for
    an argument it never gave."""
    async with Client(build_server(settings(tmp_path))) as client:
        result = await client.call_tool("get_interactions", {"cursor": cursor})
    assert result.is_error
    assert text_of(result).startswith("invalid input: cursor: "), text_of(result)


# =============================================================================================
# Cursors: garbage, another tool's, another user's
# =============================================================================================

CURSOR_FIELDS: dict[str, SearchStrategy[Any]] = {
    "user_id": st.sampled_from(["ann", "bob", "", "a/b", " ann", "ann\x00", "%61nn"]) | JSON,
    "top_k": st.sampled_from([1, 10, 1000, 0, -1, 1001, 2**63, "5", None, True]) | JSON,
    "most_recent_k": st.sampled_from([1, 0, 1001, "x"]) | JSON,
    "query": st.sampled_from(["gardening", "", "\x00", "(", "NEAR(", "a" * 10_001]) | JSON,
    "start_time": st.sampled_from(["2026-01-01", "x", 0, -1, 2**63, "9999-12-31T23:59:59-14:00"])
    | JSON,
    "end_time": st.sampled_from(["2020-01-01", "x", 0, 10**30, "0001-01-01T00:00:00+14:00"]) | JSON,
    "request_id": st.sampled_from(["r", "", "a\x00", "x" * 300]) | JSON,
    "threshold": st.sampled_from([0.5, -1, 2, "NaN", 1e309]) | JSON,
    "search_mode": st.sampled_from(["fts", "vector", "FTS", ""]) | JSON,
    "extra": JSON,
}
CURSOR_REQUESTS: SearchStrategy[Any] = st.fixed_dictionaries({}, optional=CURSOR_FIELDS) | JSON
PAYLOADS: SearchStrategy[Any] = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "tool": st.sampled_from([*TOOLS, "", "publish_interaction"]) | JSON,
            "request": CURSOR_REQUESTS,
            "position": st.fixed_dictionaries(
                {},
                optional={
                    key: st.sampled_from([0, 1, 5, -1, 2**64, 10**100, 1.5, "1", True, None]) | JSON
                    for key in ("last_created", "last_id", "floor_created", "floor_id", "max_id")
                }
                | {"ids": st.lists(st.integers(-1, 60), max_size=5) | JSON},
            )
            | JSON,
        },
    ),
)


def _nested_cursor(depth: int, opener: bytes) -> str:
    return packed(opener * depth)


def _position(tool: str, shown: int) -> Position:
    """A position `shown` turns into a listing of tool's (of ids 1-50)."""
    if tool == "search_interactions":
        return Unshown(ids=list(range(shown + 1, 51)))
    return Keyset(last_created=2**40, last_id=51 - shown, floor_created=0, floor_id=1, max_id=50)


def _listing_cursor(tool: str, user: str, shown: int) -> str:
    return make_cursor(tool, GetRequest(user_id=user), _position(tool, shown))


GARBAGE_CURSORS: SearchStrategy[str] = st.one_of(
    st.text(max_size=100),
    st.binary(max_size=100).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    PAYLOADS.map(raw_cursor),
    PAYLOADS.map(lambda payload: base64.b64encode(json.dumps(payload).encode()).decode()),
    st.builds(
        _nested_cursor, st.sampled_from([10, 900, 1_100, 20_000]), st.sampled_from([b"[", b'{"a":'])
    ),
    st.builds(
        _listing_cursor,
        st.sampled_from([*TOOLS, "publish_batch"]),
        st.sampled_from(["ann", "bob"]),
        st.integers(0, 50),
    ),
)


def test_a_cursor_not_given_by_the_tool_is_refused_in_words() -> None:
    with harness(client=client_of(allow_admin=True)) as served:

        async def seed() -> None:
            turns = [{"content": f"gardening {n}"} for n in range(5)]
            for user in ("ann", "bob"):
                await ok(
                    served["client"],
                    "publish_interaction",
                    {"user_id": user, "interactions": turns},
                )

        served.run(seed)

        @examples(60)
        @given(
            tool=st.sampled_from(TOOLS),
            cursor=GARBAGE_CURSORS,
            user=st.sampled_from(["", "ann", "bob"]),
        )
        def example(tool: str, cursor: str, user: str) -> None:
            arguments: Args = {"cursor": cursor}
            if user and tool != "get_all_interactions":
                arguments["user_id"] = user
            result = served.run(lambda: call(served["client"], tool, arguments))
            text = text_of(result)
            if result.is_error:
                clean(text)
                assert text.startswith("invalid input: cursor: "), text[:500]
            else:
                content = result.structured_content
                assert content is not None
                if user and tool != "get_all_interactions":
                    assert content["user_id"] == user
                    assert {t["user_id"] for t in content["interactions"]} <= {user}

        example()


def test_a_pinned_caller_cannot_page_into_another_users_turns() -> None:
    with harness(
        admin=client_of(allow_admin=True), pinned=client_of(user_id=PINNED, pin_user=True)
    ) as served:

        async def seed() -> None:
            turns = [{"content": f"gardening {n} " + "x" * 500} for n in range(5)]
            for user in (PINNED, OTHER, "Ann", "ann "[:3] + "\u200b"):
                await ok(
                    served["admin"], "publish_interaction", {"user_id": user, "interactions": turns}
                )

        served.run(seed)
        users = st.sampled_from(
            [OTHER, "Ann", "ann\u200b", "%61nn", "ann ", " ann", "ANN", "", PINNED]
        )

        @examples(40)
        @given(
            tool=st.sampled_from(TOOLS[:2]),
            request=st.fixed_dictionaries(
                {"user_id": users},
                optional={"top_k": st.integers(1, 5), "query": st.sampled_from(["gardening", "x"])},
            ),
            shown=st.integers(0, 6),
            named=st.sampled_from(["", OTHER, PINNED]),
        )
        def example(tool: str, request: Args, shown: int, named: str) -> None:
            if tool == "get_interactions":
                request.pop("query", None)
            position = _position(tool, shown).model_dump()
            arguments: Args = {
                "cursor": raw_cursor({"tool": tool, "request": request, "position": position})
            }
            if named:
                arguments["user_id"] = named
            result = served.run(lambda: call(served["pinned"], tool, arguments))
            if result.is_error:
                clean(text_of(result))
                return
            content = result.structured_content
            assert content is not None
            assert content["user_id"] == PINNED, content["user_id"]
            assert {t["user_id"] for t in content["interactions"]} <= {PINNED}

        example()


def test_resources_list_refuses_any_cursor_it_did_not_give_this_caller() -> None:
    with harness(pinned=client_of(user_id=PINNED, pin_user=True)) as served:

        @examples(40)
        @given(
            cursor=st.one_of(
                GARBAGE_CURSORS,
                st.builds(
                    make_list_cursor,
                    st.sampled_from([OTHER, "Ann", "user-default"]),
                    st.integers(0, 100),
                ),
                PAYLOADS.map(raw_cursor),
            )
        )
        def example(cursor: str) -> None:
            async def run() -> None:
                try:
                    listed = await served["pinned"].list_resources(
                        cursor=cursor, cache_mode="bypass"
                    )
                except MCPError as err:
                    invalid_params(err)
                    return
                for resource in listed.resources:
                    uri = str(resource.uri)
                    assert not uri.startswith("reflexio://users/") or uri.startswith(
                        f"reflexio://users/{PINNED}/"
                    ), uri

            served.run(run)

        example()
