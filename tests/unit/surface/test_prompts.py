"""The prompts, in process on the embedded store: what they bring into a conversation, within
their budget, and how they refuse bad input (in words, never "Internal server error")."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, TextContent

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncGenerator[Client]:
    async with Client(build_server(Settings(backend="embedded", data_dir=tmp_path))) as client:
        yield client


async def prompt_text(client: Client, name: str, arguments: dict[str, str]) -> str:
    result = await client.get_prompt(name, arguments)
    assert len(result.messages) == 1
    content = result.messages[0].content
    assert isinstance(content, TextContent)
    return content.text


async def publish(client: Client, user_message: str, **more: Any) -> None:
    result = await client.call_tool(
        "publish_interaction", {"user_message": user_message, "agent_response": "noted", **more}
    )
    assert not result.is_error


async def test_the_prompts_are_listed_as_in_the_manifest(mcp: Client) -> None:
    listed = {
        prompt.name: (prompt.description, [a.name for a in prompt.arguments or []])
        for prompt in (await mcp.list_prompts()).prompts
    }
    manifest = json.loads((ROOT / "manifest.json").read_text())
    declared = {p["name"]: (p["description"], p["arguments"]) for p in manifest["prompts"]}
    assert listed == declared


async def test_recall_brings_the_matching_turns(mcp: Client) -> None:
    await publish(mcp, "The zeppelin model needs PVA glue for its skin")
    await publish(mcp, "Unrelated: the invoice is due Friday")
    text = await prompt_text(mcp, "recall", {"topic": "zeppelin glue"})
    assert text.startswith("Here is what was said before about 'zeppelin glue' (user ")
    assert "user: The zeppelin model needs PVA glue for its skin" in text
    assert "invoice" not in text
    assert "left out" not in text


async def test_recall_keeps_within_its_budget_and_says_how_to_get_the_rest(mcp: Client) -> None:
    for n in range(6):
        await publish(mcp, f"zeppelin note {n}: " + "lorem ipsum " * 100)
    text = await prompt_text(mcp, "recall", {"topic": "zeppelin", "budget_chars": "1500"})
    kept = [line for line in text.splitlines() if line.startswith("- [")]
    assert 1 <= len(kept) < 6
    assert sum(len(line) for line in kept) <= 1500 or len(kept) == 1
    assert f"({6 - len(kept)} more matching turns were left out" in text
    assert "call search_interactions with query 'zeppelin'" in text


async def test_recall_of_nothing_says_so(mcp: Client) -> None:
    text = await prompt_text(mcp, "recall", {"topic": "platypus"})
    assert text.startswith("Nothing was found about 'platypus'")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "invalid input: topic: required; say what to recall"),
        ({"topic": "  "}, "invalid input: topic: required"),
        ({"topic": "x" * 20_000}, "invalid input: topic: at most"),
        ({"topic": "x", "budget_chars": "lots"}, "invalid input: budget_chars: must be a whole"),
        ({"topic": "x", "budget_chars": "10"}, "invalid input: budget_chars: must be between 500"),
        ({"topic": "x", "user_id": "a/b"}, "invalid input: user_id: a user id must not contain"),
        ({"topic": "x", "limit": "3"}, "invalid input: limit: not an argument of recall; it takes"),
    ],
)
async def test_recall_refuses_bad_input_in_words(
    mcp: Client, arguments: dict[str, str], message: str
) -> None:
    with pytest.raises(MCPError) as refused:
        await mcp.get_prompt("recall", arguments)
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message.startswith(message), refused.value.error.message


async def test_a_pinned_caller_recalls_only_its_own(tmp_path: Path) -> None:
    pinned = Settings(backend="embedded", data_dir=tmp_path, pin_user=True, user_id="carol")
    async with Client(build_server(pinned)) as client:
        await publish(client, "carol's zeppelin")
        own = await prompt_text(client, "recall", {"topic": "zeppelin", "user_id": "carol"})
        assert "carol's zeppelin" in own
        with pytest.raises(MCPError, match="acts only for user 'carol'"):
            await client.get_prompt("recall", {"topic": "zeppelin", "user_id": "dave"})


async def test_remember_this_conversation_says_how_to_publish_it(mcp: Client) -> None:
    text = await prompt_text(mcp, "remember_this_conversation", {"session_id": "trip-42"})
    for part in [
        "call the publish_interaction tool once",
        'session_id "trip-42"',
        "expert_content",
        "tools_used",
        "request_id",
        "without secrets",
    ]:
        assert part in text


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arguments=st.dictionaries(
        st.sampled_from(["topic", "user_id", "budget_chars", "other"]), st.text(max_size=50)
    )
)
async def test_recall_answers_any_arguments_in_words(
    mcp: Client, arguments: dict[str, str]
) -> None:
    text, refusal = "", ""
    try:
        text = await prompt_text(mcp, "recall", arguments)
    except MCPError as err:
        refusal = err.error.message
    assert refusal.startswith("invalid input: ") or text.startswith(
        ("Here is what", "Nothing was found")
    ), (refusal, text)


@pytest.mark.parametrize("name", ["no_such_prompt", "Recall", ""])
async def test_an_unknown_prompt_is_invalid_params_naming_the_prompts(
    mcp: Client, name: str
) -> None:
    with pytest.raises(MCPError) as refused:
        await mcp.get_prompt(name, {})
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message == (
        f"unknown prompt {name!r}: this server's prompts are recall, remember_this_conversation"
    )


async def test_recall_advertises_what_it_enforces_over_stdio(tmp_path: Path) -> None:
    """Through the command as a client starts it: topic is required (a call without it is
    refused), the other arguments are optional (a call without them answers)."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "reflexio_mcp"],
        env={"PATH": os.environ.get("PATH", ""), "REFLEXIO_MCP_DATA_DIR": str(tmp_path)},
    )
    with anyio.fail_after(60):
        async with Client(server) as client:
            [recall] = [p for p in (await client.list_prompts()).prompts if p.name == "recall"]
            required = {a.name: a.required for a in recall.arguments or []}
            assert required == {"topic": True, "user_id": False, "budget_chars": False}
            with pytest.raises(MCPError, match="invalid input: topic: required"):
                await client.get_prompt("recall", {})
            text = await prompt_text(client, "recall", {"topic": "anything"})
    assert text.startswith("Nothing was found about 'anything'")
