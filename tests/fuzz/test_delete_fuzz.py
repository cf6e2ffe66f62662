"""Fuzzing delete confirmation, in process on the embedded store: delete_interaction
deletes only after an accepted `delete: true` (or confirm=true from a client that cannot
ask), whatever the client answers.

The first tests are minimal reproductions of faults this fuzzing found.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.client import ConnectMode
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitRequestParams, ElicitResult, ErrorData
from mcp_types import CallToolResult
from pydantic import ValidationError

from reflexio_mcp.app import build_server
from tests.support.surface_fuzzing import (
    LAX_BOOL,
    Args,
    ElicitValue,
    call,
    clean,
    client_of,
    examples,
    harness,
    ok,
    settings,
    text_of,
)

# ========================================================================================
# Minimal reproductions of the faults found (each fails until fixed)
# ========================================================================================


async def delete_answered(
    tmp_path: Path, mode: ConnectMode, content: dict[str, ElicitValue] | None
) -> tuple[int, CallToolResult, list[int]]:
    """Publish one exchange, ask to delete its newest turn, and have the user accept with
    `content`: the target, the result, and the ids left."""

    async def user(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content=content)

    async with Client(
        build_server(settings(tmp_path)), mode=mode, elicitation_callback=user
    ) as client:
        await ok(client, "publish_interaction", {"user_message": "a", "agent_response": "b"})
        target = (await ok(client, "get_interactions", {}))["interactions"][0]["interaction_id"]
        result = await client.call_tool("delete_interaction", {"interaction_id": target})
        listed = (await ok(client, "get_interactions", {}))["interactions"]
    return target, result, [turn["interaction_id"] for turn in listed]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("answer", [{"delete": "yes"}, {"delete": 1}, {"delete": "true"}])
async def test_only_a_boolean_true_answer_deletes(
    tmp_path: Path, mode: ConnectMode, answer: dict[str, ElicitValue]
) -> None:
    """Confirmation.delete is a lax bool: pydantic takes "yes", 1, "on" or "true" for True."""

    target, result, left = await delete_answered(tmp_path, mode, answer)
    assert target in left, f"deleted on the answer {answer!r}: {text_of(result)[:300]}"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    "content", [None, {}, {"Delete": True}], ids=["none", "empty", "other-key"]
)
async def test_an_answer_of_the_wrong_shape_is_reported_in_our_words(
    tmp_path: Path, mode: ConnectMode, content: dict[str, ElicitValue] | None
) -> None:
    """The SDK's resolver error ("Resolver 'reflexio_mcp.surface.deletion:confirm_deletion'
    received an accepted elicitation whose content does not match the requested schema") reaches
    the model as is: it names our code and says nothing of what happened to the interaction."""

    _, result, _ = await delete_answered(tmp_path, mode, content)
    text = text_of(result)
    if result.is_error:
        clean(text)
        assert "not deleted" in text or "nothing deleted" in text, text
    else:
        assert result.structured_content is not None
        assert result.structured_content["deleted"] is None, text


@pytest.mark.parametrize("failure", ["error", "raise"])
async def test_a_client_that_fails_to_ask_gets_a_tool_error_in_our_words(
    tmp_path: Path, failure: str
) -> None:
    """On the 2025 era, a client whose question fails (it answers the elicitation with an
    error, or its form crashes) gets the tools/call answered with that very JSON-RPC error
    (code 0 and "form crashed" for a crash), not a tool error saying nothing was deleted."""

    async def user(context: ClientRequestContext, params: ElicitRequestParams) -> ErrorData:
        if failure == "raise":
            raise RuntimeError("form crashed")
        return ErrorData(code=-32600, message="the user closed the window")

    server = build_server(settings(tmp_path))
    async with Client(server, mode="legacy", elicitation_callback=user) as client:
        await ok(client, "publish_interaction", {"user_message": "a", "agent_response": "b"})
        target = (await ok(client, "get_interactions", {}))["interactions"][0]["interaction_id"]
        result = await call(client, "delete_interaction", {"interaction_id": target})
    assert result.is_error
    clean(text_of(result))
    assert "not deleted" in text_of(result) or "nothing deleted" in text_of(result)


# =============================================================================================
# delete_interaction: no deletion without consent, whatever the client answers
# =============================================================================================

ANSWER_VALUES: SearchStrategy[Any] = st.one_of(
    st.sampled_from([True, False, "true", "false", "yes", "no", 1, 0, "", "1", 1.0]),
    st.lists(st.sampled_from(["true", "x"]), max_size=2),
    st.text(max_size=5),
)


@dataclass
class Script:
    """What the client's user answers next (the callback is fixed when the client connects)."""

    answer: Any = None
    asked: int = 0

    async def __call__(
        self, context: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult | ErrorData:
        self.asked += 1
        answer = self.answer
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, ElicitResult | ErrorData)
        return answer


def _answer(action: str, content: dict[str, Any] | None) -> ElicitResult:
    """Any answer, even one whose content the SDK's model would refuse."""
    return ElicitResult.model_construct(action=action, content=content)


ANSWERS: SearchStrategy[Any] = st.one_of(
    st.builds(
        _answer,
        st.sampled_from(["accept", "accept", "decline", "cancel"]),
        st.none()
        | st.dictionaries(st.sampled_from(["delete", "Delete", "x"]), ANSWER_VALUES, max_size=2)
        | st.fixed_dictionaries({"delete": ANSWER_VALUES}),
    ),
    st.just(ErrorData(code=-32600, message="the user closed the window")),
    st.just(RuntimeError("the client's form crashed")),
)


def consented(answer: Any) -> bool:
    return (
        isinstance(answer, ElicitResult)
        and answer.action == "accept"
        and isinstance(answer.content, dict)
        and answer.content.get("delete") is True
    )


def confirmed(arguments: Args) -> bool:
    value = arguments.get("confirm", False)
    if isinstance(value, str):
        with suppress(ValueError):
            value = json.loads(value)  # the SDK pre-parses string arguments as JSON
    try:
        return LAX_BOOL.validate_python(value) is True
    except ValidationError:
        return False


def test_delete_interaction_deletes_only_with_consent() -> None:
    scripts = {"auto": Script(), "legacy": Script()}
    with harness(
        admin=client_of(allow_admin=True),
        auto=client_of("auto", elicitation=scripts["auto"]),
        legacy=client_of("legacy", elicitation=scripts["legacy"]),
        cannot_ask=client_of("legacy"),
    ) as served:

        @examples(50)
        @given(
            era=st.sampled_from(["auto", "legacy", "cannot_ask"]),
            answer=ANSWERS,
            owner=st.sampled_from(["", "bob", "東京"]),
            named=st.sampled_from(["owner", "omitted", "other"]),
            confirm=st.none()
            | st.sampled_from([True, False, "true", "yes", 1, 0, "false", None, [], "x"]),
            extra=st.dictionaries(
                st.sampled_from(["confirm", "consent", "delete"]), ANSWER_VALUES, max_size=1
            ),
        )
        def example(
            era: str, answer: Any, owner: str, named: str, confirm: Any, extra: Args
        ) -> None:
            user = owner or "user-default"
            script = scripts.get(era)
            if script is not None:
                script.answer = answer

            async def run() -> tuple[CallToolResult | Exception, bool, Args]:
                arguments: Args = {"user_message": "forget me", "agent_response": "ok"}
                if owner:
                    arguments["user_id"] = owner
                await ok(served["admin"], "publish_interaction", arguments)
                listed = await ok(
                    served["admin"], "get_interactions", {"user_id": user, "top_k": 1}
                )
                target = listed["interactions"][0]["interaction_id"]
                sent: Args = {"interaction_id": target, **extra}
                if named == "owner" and owner:
                    sent["user_id"] = owner
                elif named == "other":
                    sent["user_id"] = "nobody"
                if confirm is not None:
                    sent["confirm"] = confirm
                outcome: CallToolResult | Exception
                try:
                    outcome = await served[era].call_tool("delete_interaction", sent)
                except MCPError as err:
                    outcome = err
                except Exception as err:  # noqa: BLE001  the client's own callback raised
                    outcome = err
                found = await ok(served["admin"], "get_interactions", {"user_id": user, "top_k": 5})
                still = target in [t["interaction_id"] for t in found["interactions"]]
                return outcome, not still, sent

            outcome, deleted, sent = served.run(run)
            note(f"delete_interaction({sent}) -> deleted: {deleted}, {outcome!r}"[:2000])
            if deleted:
                assert named != "other", "deleted another user's interaction"
                if era == "cannot_ask":
                    assert confirmed(sent), f"deleted without confirm=true: {sent!r}"
                else:
                    assert consented(answer), f"deleted on the answer {answer!r}"
            if isinstance(outcome, CallToolResult):
                if outcome.is_error:
                    clean(text_of(outcome))
            else:  # raised in the client itself: a 2026 client drives the question locally
                problem = repr(outcome)
                if isinstance(outcome, MCPError):
                    problem = f"protocol error {outcome.error.code}: {outcome.error.message}"
                assert era == "auto", problem
                assert isinstance(answer, ErrorData | Exception), problem

        example()
