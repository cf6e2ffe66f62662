"""delete_interaction asks the user first, on both protocol eras, in process on the embedded
store: accepted, declined, cancelled, answered "no", clients that cannot ask (confirm=true),
and --no-confirm."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.client import ConnectMode
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CallToolResult,
    ElicitRequestParams,
    ElicitResult,
    InputRequiredResult,
    InputResponses,
    TextContent,
)

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings

ERAS: list[ConnectMode] = ["auto", "legacy"]


class User:
    """Answers every confirmation question as told, and remembers what it was shown."""

    def __init__(self, action: Literal["accept", "decline", "cancel"], delete: bool = True) -> None:
        self.action: Literal["accept", "decline", "cancel"] = action
        self.delete = delete
        self.questions: list[str] = []

    async def __call__(
        self, context: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult:
        self.questions.append(params.message)
        if self.action != "accept":
            return ElicitResult(action=self.action)
        return ElicitResult(action="accept", content={"delete": self.delete})


def server(tmp_path: Path, **settings: Any) -> Any:
    return build_server(Settings(backend="embedded", data_dir=tmp_path, **settings))


async def stored_turn(client: Client, text: str = "My locker code is 4471") -> int:
    published = await client.call_tool(
        "publish_interaction", {"user_message": text, "agent_response": "noted"}
    )
    assert not published.is_error, published.content
    listed = await client.call_tool("get_interactions", {})
    assert listed.structured_content is not None
    turns = listed.structured_content["interactions"]
    return next(t["interaction_id"] for t in turns if t["content"] == text)


def text_of(result: CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


async def remaining_ids(client: Client) -> set[int]:
    listed = await client.call_tool("get_interactions", {})
    assert listed.structured_content is not None
    return {t["interaction_id"] for t in listed.structured_content["interactions"]}


@pytest.mark.parametrize("mode", ERAS)
async def test_an_accepted_confirmation_deletes_what_the_user_was_shown(
    tmp_path: Path, mode: ConnectMode
) -> None:
    user = User("accept")
    async with Client(server(tmp_path), mode=mode, elicitation_callback=user) as client:
        target = await stored_turn(client)
        result = await client.call_tool("delete_interaction", {"interaction_id": target})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["status"] == "deleted"
        assert result.structured_content["deleted"]["interaction_id"] == target
        assert target not in await remaining_ids(client)
    assert len(user.questions) == 1
    assert "Delete this interaction permanently?" in user.questions[0]
    assert f"interaction {target} of user 'user-default'" in user.questions[0]
    assert "My locker code is 4471" in user.questions[0]


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize(
    ("user", "status"),
    [
        (User("decline"), "declined"),
        (User("cancel"), "cancelled"),
        (User("accept", delete=False), "kept"),
    ],
    ids=["declined", "cancelled", "answered-no"],
)
async def test_no_consent_deletes_nothing_and_says_so(
    tmp_path: Path, mode: ConnectMode, user: User, status: str
) -> None:
    async with Client(server(tmp_path), mode=mode, elicitation_callback=user) as client:
        target = await stored_turn(client)
        result = await client.call_tool("delete_interaction", {"interaction_id": target})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert result.structured_content["status"] == status
        assert result.structured_content["deleted"] is None
        assert result.structured_content["message"].startswith("nothing deleted: ")
        assert target in await remaining_ids(client)


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_that_cannot_ask_needs_confirm_true(
    tmp_path: Path, mode: ConnectMode
) -> None:
    async with Client(server(tmp_path), mode=mode) as client:
        target = await stored_turn(client)
        refused = await client.call_tool("delete_interaction", {"interaction_id": target})
        assert refused.is_error
        text = text_of(refused)
        assert text.startswith("not deleted: deleting needs the user's consent")
        assert "My locker code is 4471" in text
        assert "confirm=true" in text
        assert target in await remaining_ids(client)
        agreed = await client.call_tool(
            "delete_interaction", {"interaction_id": target, "confirm": True}
        )
        assert not agreed.is_error, agreed.content
        assert target not in await remaining_ids(client)


async def test_confirm_true_does_not_skip_the_question_when_the_client_can_ask(
    tmp_path: Path,
) -> None:
    user = User("decline")
    async with Client(server(tmp_path), elicitation_callback=user) as client:
        target = await stored_turn(client)
        result = await client.call_tool(
            "delete_interaction", {"interaction_id": target, "confirm": True}
        )
        assert result.structured_content is not None
        assert result.structured_content["status"] == "declined"
        assert target in await remaining_ids(client)
    assert len(user.questions) == 1


async def test_no_confirm_deletes_without_asking(tmp_path: Path) -> None:
    user = User("decline")
    async with Client(server(tmp_path, no_confirm=True), elicitation_callback=user) as client:
        target = await stored_turn(client)
        result = await client.call_tool("delete_interaction", {"interaction_id": target})
        assert not result.is_error, result.content
        assert target not in await remaining_ids(client)
    assert user.questions == []


@pytest.mark.parametrize("mode", ERAS)
async def test_an_unknown_id_is_refused_before_anyone_is_asked(
    tmp_path: Path, mode: ConnectMode
) -> None:
    user = User("accept")
    async with Client(server(tmp_path), mode=mode, elicitation_callback=user) as client:
        await stored_turn(client)
        result = await client.call_tool("delete_interaction", {"interaction_id": 987654})
        assert result.is_error
        assert "no interaction 987654 for user 'user-default'" in text_of(result)
    assert user.questions == []


async def test_the_schema_offers_confirm_and_hides_the_consent(tmp_path: Path) -> None:
    async with Client(server(tmp_path)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    properties = tools["delete_interaction"].input_schema["properties"]
    assert set(properties) == {"interaction_id", "user_id", "confirm"}
    assert tools["delete_interaction"].input_schema["required"] == ["interaction_id"]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-key", "own-keys"])
async def test_replicas_sharing_a_state_key_take_each_others_answers(
    tmp_path: Path, shared: bool
) -> None:
    """A 2026-07-28 client answers the question by calling again, and behind a load balancer
    that call may reach another replica: it needs the key the question was sealed with."""
    key = "k" * 40
    replicas = [
        server(tmp_path, state_key=key if shared else None),
        server(tmp_path, state_key=key if shared else None),
    ]
    user = User("accept")
    async with (
        Client(replicas[0], elicitation_callback=user) as first,
        Client(replicas[1], elicitation_callback=user) as second,
    ):
        target = await stored_turn(first)
        arguments = {"interaction_id": target}
        asked = await first.session.call_tool(
            "delete_interaction", arguments, allow_input_required=True
        )
        assert isinstance(asked, InputRequiredResult)
        answers: InputResponses = {
            key: ElicitResult(action="accept", content={"delete": True})
            for key in asked.input_requests or {}
        }
        if not shared:
            with pytest.raises(MCPError, match="Invalid or expired requestState"):
                await second.session.call_tool(
                    "delete_interaction",
                    arguments,
                    input_responses=answers,
                    request_state=asked.request_state,
                )
            assert target in await remaining_ids(first)
            return
        done = await second.session.call_tool(
            "delete_interaction",
            arguments,
            input_responses=answers,
            request_state=asked.request_state,
        )
        assert not done.is_error, text_of(done)
        assert target not in await remaining_ids(first)
