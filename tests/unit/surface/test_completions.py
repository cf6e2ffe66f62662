"""Completions, in process on the embedded store (the Reflexio side is in the contract suite):
which arguments are completed, from what, filtered by prefix, capped, and within the caller's
scope."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import Completion, PromptReference, ResourceTemplateReference

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings

USERS = ResourceTemplateReference(uri="reflexio://users/{user_id}/interactions")
SESSIONS = ResourceTemplateReference(uri="reflexio://users/{user_id}/sessions/{session_id}")
RECALL = PromptReference(name="recall")
REMEMBER = PromptReference(name="remember_this_conversation")


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncGenerator[Client]:
    async with Client(build_server(Settings(backend="embedded", data_dir=tmp_path))) as client:
        yield client


async def publish(client: Client, session_id: str, user_id: str = "") -> None:
    arguments: dict[str, Any] = {
        "session_id": session_id,
        "user_message": "hi",
        "agent_response": "hello",
    }
    if user_id:
        arguments["user_id"] = user_id
    result = await client.call_tool("publish_interaction", arguments)
    assert not result.is_error, result.content


async def complete(
    client: Client,
    ref: PromptReference | ResourceTemplateReference,
    name: str,
    value: str,
    context: dict[str, str] | None = None,
) -> Completion:
    return (await client.complete(ref, {"name": name, "value": value}, context)).completion


async def test_the_server_declares_completions(mcp: Client) -> None:
    assert mcp.server_capabilities.completions is not None


async def test_user_ids_are_offered_by_prefix_most_recently_active_first(mcp: Client) -> None:
    for user in ("anna", "andrew", "bob", "Annabel"):
        await publish(mcp, "s", user)
    for ref in (USERS, SESSIONS, RECALL):
        found = await complete(mcp, ref, "user_id", "an")
        assert found.values == ["andrew", "anna"]
        assert (found.total, found.has_more) == (2, False)
    everyone = await complete(mcp, USERS, "user_id", "")
    assert everyone.values == ["Annabel", "bob", "andrew", "anna"]
    assert (await complete(mcp, USERS, "user_id", "zed")).values == []


async def test_session_ids_are_the_context_users_or_the_callers_own(mcp: Client) -> None:
    for session in ("trip-1", "trip-2", "work"):
        await publish(mcp, session, "anna")
    await publish(mcp, "trip-mine")  # the default user's
    found = await complete(mcp, SESSIONS, "session_id", "trip", {"user_id": "anna"})
    assert found.values == ["trip-2", "trip-1"]
    assert (found.total, found.has_more) == (2, False)
    own = await complete(mcp, SESSIONS, "session_id", "trip")
    assert own.values == ["trip-mine"]
    # The prompt publishes for the caller: its session ids are the caller's own.
    remember = await complete(mcp, REMEMBER, "session_id", "", {"user_id": "anna"})
    assert remember.values == ["trip-mine"]
    nobody = await complete(mcp, SESSIONS, "session_id", "", {"user_id": "nobody"})
    assert (nobody.values, nobody.total) == ([], 0)
    bad = await complete(mcp, SESSIONS, "session_id", "", {"user_id": "a/b"})
    assert bad.values == []


async def test_at_most_100_values_with_the_total_and_has_more(mcp: Client) -> None:
    for n in range(105):
        await publish(mcp, f"s{n:03}")
    found = await complete(mcp, SESSIONS, "session_id", "s")
    assert len(found.values) == 100
    assert found.values[0] == "s104"
    assert (found.total, found.has_more) == (105, True)
    narrowed = await complete(mcp, SESSIONS, "session_id", "s10")
    assert narrowed.values == ["s104", "s103", "s102", "s101", "s100"]


@pytest.mark.parametrize(
    ("ref", "name", "value"),
    [
        (RECALL, "topic", "zep"),
        (RECALL, "budget_chars", ""),
        (PromptReference(name="no_such_prompt"), "user_id", ""),
        (ResourceTemplateReference(uri="reflexio://elsewhere/{user_id}"), "user_id", ""),
        (USERS, "session_id", ""),
        (USERS, "user_id", "x" * 300),
    ],
)
async def test_other_arguments_get_no_suggestions(
    mcp: Client, ref: PromptReference | ResourceTemplateReference, name: str, value: str
) -> None:
    await publish(mcp, "s", "anna")
    assert (await complete(mcp, ref, name, value)).values == []


async def test_a_pinned_caller_is_offered_only_its_own_user_and_sessions(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path)
    async with Client(build_server(settings)) as client:
        await publish(client, "theirs", "dave")
        await publish(client, "carols", "carol")
    pinned = settings.model_copy(update={"pin_user": True, "user_id": "carol"})
    async with Client(build_server(pinned)) as client:
        assert (await complete(client, USERS, "user_id", "")).values == ["carol"]
        assert (await complete(client, RECALL, "user_id", "ca")).values == ["carol"]
        assert (await complete(client, RECALL, "user_id", "d")).values == []
        own = await complete(client, SESSIONS, "session_id", "")
        assert own.values == ["carols"]
        assert (await complete(client, REMEMBER, "session_id", "")).values == ["carols"]
        theirs = await complete(client, SESSIONS, "session_id", "", {"user_id": "dave"})
        assert theirs.values == []
