"""Fuzzing secret redaction, in process on the embedded store: a secret in any scanned
field of a publish (or a batch item) never reads back, in any tool result, resource,
log record or log notification, and never makes the publish fail.

The first tests are minimal reproductions of faults this fuzzing found.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client, MCPDeprecationWarning
from mcp.client.session import IncomingMessage
from mcp_types import LoggingMessageNotification, ResourceUpdatedNotification

from reflexio_mcp.app import build_server
from reflexio_mcp.core.limits import MAX_TOOL_STATUS_CHARS
from reflexio_mcp.core.models import InteractionData, PublishRequest
from tests.support.surface_fuzzing import (
    GITHUB,
    SECRETS,
    Args,
    call,
    client_of,
    examples,
    fresh,
    harness,
    leaked,
    ok,
    read_text,
    session_uri,
    settings,
    text_of,
    user_uri,
)

# ========================================================================================
# Minimal reproductions of the faults found (each fails until fixed)
# ========================================================================================


async def test_a_publish_redaction_pushes_past_the_size_limit_says_so(tmp_path: Path) -> None:
    """Markers are longer than short secrets ('[REDACTED:password]' is 19 characters), so a
    publish just under Reflexio's 10 MiB grows past it once redacted (with --keep-secrets the
    same publish is stored). It cannot be stored without giving up the secrets or the size
    limit, so the refusal must say that redaction is what made it too large."""
    content = "password=Tr0ub4dx " * 1000
    shape = PublishRequest(
        request_id="r",
        user_id="user-default",
        session_id="s",
        source="mcp",
        interaction_data_list=[InteractionData(content=content)],
    )
    room = 10 * 2**20 - len(shape.model_dump_json(exclude_none=True).encode()) - 200
    arguments: Args = {
        "interactions": [{"content": content, "image_encoding": "A" * room}],
        "request_id": "r",
        "session_id": "s",
    }
    async with Client(build_server(settings(tmp_path / "kept", keep_secrets=True))) as client:
        await ok(client, "publish_interaction", arguments)  # valid as sent
    async with Client(build_server(settings(tmp_path / "redacted"))) as client:
        refused = await client.call_tool("publish_interaction", arguments)
    assert refused.is_error
    assert "MiB" in text_of(refused)
    assert text_of(refused).endswith(
        "(once its 1000 secret(s) were replaced by [REDACTED:...] markers)"
    )
    assert "Tr0ub4dx" not in text_of(refused)


@pytest.mark.parametrize(
    "turn",
    [
        {
            "content": "ran it",
            "tools_used": [{"tool_name": f"gh auth login --with-token {GITHUB}"}],
        },
        {"content": "hi", "role": f"bot {GITHUB}"},
    ],
    ids=["tool_name", "role"],
)
async def test_a_secret_in_tool_name_or_role_never_reads_back(tmp_path: Path, turn: Args) -> None:
    """secret_redaction scans content, expert_content, user_action_description,
    interacted_image_url, tools_used status and tool_data, not tool_name or role."""
    async with Client(build_server(settings(tmp_path))) as client:
        await ok(client, "publish_interaction", {"interactions": [turn]})
        listed = await call(client, "get_interactions", {})
        document = await read_text(client, "reflexio://interactions/recent")
    assert not leaked(GITHUB, text_of(listed))
    assert not leaked(GITHUB, document)


@pytest.mark.parametrize(
    "text",
    [
        f"Your sign-in link: https://app.example.com/magic/{SECRETS['jwt']}",
        f"GET https://api.example.com/v1/session/{SECRETS['jwt']}/refresh",
        f"id_token={SECRETS['jwt']}=0",
    ],
    ids=["end-of-url-path", "inside-url-path", "followed-by-equals"],
)
async def test_a_jwt_in_a_url_path_never_reads_back(tmp_path: Path, text: str) -> None:
    """The JWT rule's lookbehind refuses a token right after `/` (a base64 character), and its
    signature part also takes `/`, `+` and `=`, so the text after the token joins the signature
    and is_formally_valid then rejects the whole match: nothing is redacted."""
    async with Client(build_server(settings(tmp_path))) as client:
        published = await ok(client, "publish_interaction", {"interactions": [{"content": text}]})
        listed = await call(client, "get_interactions", {})
    assert published["redacted"] == {"jwt": 1}
    assert not leaked(SECRETS["jwt"], text_of(listed)), text_of(listed)


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("publish_interaction", {"interactions": [{"content": "x", "created_at": GITHUB}]}),
        ("publish_interaction", {"user_message": "x", "agent_response": "y", "source": GITHUB}),
        (
            "publish_batch",
            {"publishes": [{"interactions": [{"content": "x", "user_action": GITHUB}]}]},
        ),
        ("search_interactions", {"query": "x", "start_time": GITHUB}),
    ],
    ids=["created_at", "source", "batch-user_action", "start_time"],
)
async def test_an_invalid_argument_is_never_echoed_when_it_is_a_secret(
    tmp_path: Path, tool: str, arguments: Args
) -> None:
    """`shown()` quotes up to 40 characters of a bad value, which is a whole token."""
    async with Client(build_server(settings(tmp_path))) as client:
        result = await client.call_tool(tool, arguments)
    assert "invalid input: " in text_of(result)
    assert not leaked(GITHUB, text_of(result)), text_of(result)


# =============================================================================================
# Redaction: no secret reads back, in any field, through any door
# =============================================================================================

SEPARATORS = [
    " ",
    "/",
    "\n",
    "\t",
    '"',
    "'",
    "=",
    ": ",
    ",",
    ";",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "<",
    ">",
]
FREE_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="[]"), max_size=30)
"""Text around a secret (no brackets: `[REDACTED...` in it is a marker by the rules)."""


def spliced(secret: str) -> SearchStrategy[str]:
    def splice(before: str, left: str, right: str, after: str) -> str:
        return before + left + secret + right + after

    return st.builds(
        splice,
        FREE_TEXT,
        st.sampled_from(SEPARATORS),
        st.sampled_from(SEPARATORS),
        FREE_TEXT,
    ) | st.just(secret)


Placement = Literal[
    "content", "expert_content", "user_action_description", "interacted_image_url",
    "status", "tool_data value", "tool_data key", "tool_data list", "tool_data deep",
]  # fmt: skip
PLACEMENTS: list[Placement] = [
    "content", "expert_content", "user_action_description", "interacted_image_url",
    "status", "tool_data value", "tool_data key", "tool_data list", "tool_data deep",
]  # fmt: skip


def with_secret(placement: Placement, text: str, key: str) -> Args:
    """A valid turn holding `text` (a secret in context) where `placement` says."""
    turn: Args = {"content": "gardening secrets"}
    tool: Args = {"tool_name": "run"}
    if placement in ("content", "expert_content", "user_action_description"):
        turn[placement] = (turn["content"] + " " if placement == "content" else "") + text
    elif placement == "interacted_image_url":
        turn[placement] = f"https://x.test/i.png?{text}"  # Reflexio takes only a URL
    elif placement == "status":
        tool["status"] = text
    elif placement == "tool_data value":
        tool["tool_data"] = {key: text}
    elif placement == "tool_data key":
        tool["tool_data"] = {text: key}
    elif placement == "tool_data list":
        tool["tool_data"] = {"out": ["x", text, {"y": 1}]}
    else:
        tool["tool_data"] = {"a": {"b": [{"c": {key: text}}]}}
    if len(tool) > 1:
        turn["tools_used"] = [tool]
    return turn


class Heard:
    """Everything that reached the client as notifications, and every log record."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, LoggingMessageNotification):
            self.texts.append(json.dumps(message.params.data, ensure_ascii=False))
        elif isinstance(message, ResourceUpdatedNotification):
            self.texts.append(message.params.uri)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


@contextmanager
def recorded() -> Generator[Records]:
    records = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.setLevel(level)


def test_a_secret_in_any_scanned_field_never_reads_back() -> None:
    heard = Heard()
    with recorded() as records, harness(client=client_of("legacy", messages=heard)) as served:

        async def listen() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await served["client"].set_logging_level("debug")  # pyright: ignore[reportDeprecated]

        served.run(listen)

        @examples(40)
        @given(
            data=st.data(),
            kind=st.sampled_from(sorted(SECRETS)),
            placement=st.sampled_from(PLACEMENTS),
            key=st.sampled_from(["output", "note", "password", "x"]),
            batch=st.booleans(),
        )
        def example(
            data: st.DataObject, kind: str, placement: Placement, key: str, batch: bool
        ) -> None:
            secret = SECRETS[kind]
            text = data.draw(spliced(secret), label="text")
            # A longer status is refused before any scan: Reflexio would cut it.
            assume(placement != "status" or len(text) <= MAX_TOOL_STATUS_CHARS)
            user, session = fresh("keeper"), fresh("session")
            publish: Args = {
                "user_id": user,
                "session_id": session,
                "interactions": [with_secret(placement, text, key)],
            }
            before = (len(heard.texts), len(records.texts))

            async def run() -> list[str]:
                client = served["client"]
                seen: list[str] = []
                if batch:
                    result = await call(client, "publish_batch", {"publishes": [publish]})
                    answer = result.structured_content
                    assert answer is not None, text_of(result)
                    assert answer["results"][0]["ok"], text_of(result)
                    redacted = answer["results"][0]["redacted"]
                else:
                    result = await call(client, "publish_interaction", publish)
                    assert not result.is_error, text_of(result)  # redaction broke a valid publish
                    assert result.structured_content is not None
                    redacted = result.structured_content["redacted"]
                assert redacted, f"nothing redacted in {placement}: {text!r}"
                seen.append(text_of(result))
                for tool, arguments in (
                    ("get_interactions", {"user_id": user}),
                    ("search_interactions", {"user_id": user, "query": "gardening secrets"}),
                    ("search_interactions", {"user_id": user, "query": secret}),
                ):
                    seen.append(text_of(await call(client, tool, arguments)))
                for uri in (user_uri(user), session_uri(user, session)):
                    seen.append(await read_text(client, uri))
                return seen

            for shown in served.run(run):
                assert not leaked(secret, shown), f"{kind} in {placement} read back: {shown[:3000]}"
            for line in heard.texts[before[0] :] + records.texts[before[1] :]:
                assert not leaked(secret, line), f"{kind} in a log line: {line[:1000]}"

        example()
