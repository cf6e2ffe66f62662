"""Fuzzing the MCP surface of issue 9, in process on the embedded store (paging also on the
real Reflexio): paged results and their cursors, publish_batch, secret redaction, delete
confirmation, the session resource template and paged resources/list, completions,
subscriptions and log forwarding.

The first tests are minimal reproductions of faults this fuzzing found: each fails until its
fault is fixed. The hypothesis properties after them are the rules those faults break, and the
others the surface keeps:

- following next_cursor yields exactly the listing's turns, in order, each page within the
  result size budget (plus SLACK), whatever the turns hold;
- listings paged while turns are published (past, newer, better-matching, another user's) and
  deleted between their pages (a state machine, on both backends) show each turn they held at
  their first page once, in order, unless it was deleted first, and nothing else;
- a cursor the tool did not give is refused in words naming `cursor`; a pinned caller's cursor
  never lists another user's turns;
- publish_batch answers any items one by one, and its good items are stored once, however
  often the batch is sent;
- a secret in any scanned field of a publish (or a batch item) never reads back, in any tool
  result, resource, log record or log notification, and never makes the publish fail;
- the session template, resources/list cursors, completions and subscriptions answer any
  input with a result or INVALID_PARAMS, and never a pinned caller another user's data;
- delete_interaction deletes only after an accepted `delete: true` (or confirm=true from a
  client that cannot ask), whatever the client answers.

Each property runs a few dozen examples by default (derandomized: the same ones every run), so
the file stays within the suite's time budget; REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of
every property, drawn at random, for a longer campaign.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Awaitable, Callable, Generator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, unquote

import anyio
import hypothesis
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, assume, given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy
from mcp import Client, MCPDeprecationWarning
from mcp.client import ClientRequestContext
from mcp.client.client import ConnectMode
from mcp.client.session import ElicitationFnT, IncomingMessage, MessageHandlerFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import ElicitRequestParams, ElicitResult, ErrorData
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    LoggingMessageNotification,
    PromptReference,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
    TextContent,
    TextResourceContents,
)
from pydantic import TypeAdapter, ValidationError

from reflexio_mcp.app import build_server
from reflexio_mcp.core.models import (
    MAX_ID_CHARS,
    MAX_TOOL_DATA_DEPTH,
    MAX_TOOL_STATUS_CHARS,
    GetRequest,
    Identifier,
    InteractionData,
    Keyset,
    PublishRequest,
    UserId,
)
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.paging import TOO_LARGE, Position, Unshown, make_cursor
from reflexio_mcp.surface.resources import PAGE_SIZE
from reflexio_mcp.surface.resources import make_cursor as make_list_cursor
from tests.support.reflexio_server import RunningServer
from tests.support.tool_arguments import nested

_EXAMPLES = os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES")
CALL_SECONDS = 60
SLACK = 250
"""Characters a page may exceed its budget by (the budget is the size of the whole answer)."""
MIN_BUDGET = 2_000
PINNED = "ann"
OTHER = "bob"
TOOLS = ("get_interactions", "search_interactions", "get_all_interactions")
LEAKS = (
    "Traceback",
    "Internal server error",
    "failed unexpectedly",
    "Error executing tool",
    "validation error for",
    "errors.pydantic.dev",
    "Resolver '",
    "reflexio_mcp.",
)
"""Words of a crash, of the SDK's or pydantic's raw reports, or naming our own code."""
USER_ID = TypeAdapter[str](UserId)
SESSION_ID = TypeAdapter[str](Identifier)
LAX_BOOL = TypeAdapter[bool](bool)
T = TypeVar("T")
Args = dict[str, Any]
ElicitValue = str | int | float | bool | list[str] | None
"""What an elicitation answer's content may hold."""


def examples(default: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=int(_EXAMPLES) if _EXAMPLES else default,
        derandomize=not _EXAMPLES,  # the same examples every default run; a campaign explores
        deadline=None,
        database=None,  # nothing written into the checkout; a failure prints its example
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


_serial = itertools.count()


def fresh(prefix: str) -> str:
    """A name no other example used (users, sessions, request ids)."""
    return f"{prefix}-{next(_serial)}"


# --- fake secrets, built from pieces so that no secret scanner trips on this file -----------


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


ALNUM36 = "Xk9Qm2Lr7Tz4Wv8Np3Hs6Jd1Fb5Gc0Ya2Eu7"
SECRETS = {
    "aws-access-key": "AKIA" + "J7QX2V9ZB3LKTM4P",
    "github-token": "gh" + "p_" + ALNUM36,
    "gitlab-token": "gl" + "pat-" + "xY7kP2mQ9vR4tW8zL1nB",
    "slack-token": "xo" + "xb-" + "123456789012-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx",
    "stripe-key": "sk" + "_live_" + "51Hx8aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6kL9nO2qR5tU",
    "openai-key": "sk"
    + "-proj-"
    + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    + "T3Blbk"
    + "FJ"
    + "AB7CD0EF3GH6IJ9KL2MN5-OP8qR_1s",
    "anthropic-key": "sk"
    + "-ant-api03-"
    + "Xy9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX7yZ6aB5cD4eF3gH2iJ1kL0mN9oP8qR7"
    + "sT6uV5wX4yZ3aB2cD1eF0gH-AA",
    "google-api-key": "AI" + "za" + "SyB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h",
    "huggingface-token": "hf" + "_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH",
    "jwt": ".".join(
        (
            _b64url({"alg": "HS256", "typ": "JWT"}),
            _b64url({"sub": "1234567890", "name": "Ada", "iat": 1516239022}),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        )
    ),
    "sendgrid-key": "SG"
    + "."
    + "aB3dE6gH9jK2mN5pQ8sT1v"
    + "."
    + "wX4yZ7bC0eF3hI6kL9nO2qR5tU8wX1zA4cD7fG0iJ3l",
    "npm-token": "np" + "m_" + ALNUM36,
    "square-secret": "sq0" + "csp-" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6kL9nO2q",
}
GITHUB = SECRETS["github-token"]


def leaked(secret: str, text: str) -> bool:
    """Whether `text` shows the secret, or a recognisable part of it (its last 16 characters,
    in any case)."""
    return secret.lower() in text.lower() or secret[-16:].lower() in text.lower()


# --- servers served from a portal's event loop ----------------------------------------------

ClientFactory = Callable[[Path], Client]


def client_of(
    mode: ConnectMode = "auto",
    *,
    elicitation: ElicitationFnT | None = None,
    messages: MessageHandlerFnT | None = None,
    **settings: Any,
) -> ClientFactory:
    def make(data_dir: Path) -> Client:
        built = build_server(Settings(backend="embedded", data_dir=data_dir, **settings))
        return Client(built, mode=mode, elicitation_callback=elicitation, message_handler=messages)

    return make


@dataclass
class Harness:
    """Clients of servers on one throwaway embedded store, driven from a portal."""

    portal: BlockingPortal
    clients: dict[str, Client]
    data_dir: Path

    def run(self, step: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            with anyio.fail_after(CALL_SECONDS):
                return await step()

        return self.portal.call(bounded)

    def __getitem__(self, name: str) -> Client:
        return self.clients[name]


@contextmanager
def harness(**factories: ClientFactory) -> Generator[Harness]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_blocking_portal() as portal,
        ExitStack() as stack,
    ):
        data_dir = Path(tmp)
        clients = {
            name: stack.enter_context(portal.wrap_async_context_manager(make(data_dir)))
            for name, make in factories.items()
        }
        try:
            yield Harness(portal, clients, data_dir)
        except BaseException as err:  # noqa: BLE001  re-raised below, once the clients closed
            failure = err  # thrown into them, it would come out wrapped in ExceptionGroups
        else:
            failure = None
    if failure is not None:
        raise failure


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings(backend="embedded", data_dir=tmp_path, **more)


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def invalid_params(err: MCPError) -> None:
    """A refusal as the standard wants it: INVALID_PARAMS, in clean words."""
    assert err.error.code == INVALID_PARAMS, (err.error.code, err.error.message)
    clean(err.error.message)


def clean(text: str) -> None:
    """An error in the project's own words: something said, no crash, no raw report."""
    assert text.strip(), "an error that says nothing"
    for leak in LEAKS:
        assert leak not in text, text[:2000]


async def call(client: Client, tool: str, arguments: Args) -> CallToolResult:
    try:
        return await client.call_tool(tool, arguments)
    except MCPError as err:
        raise AssertionError(
            f"{tool} answered a protocol error {err.error.code}: {err.error.message}"
        ) from None


async def ok(client: Client, tool: str, arguments: Args) -> dict[str, Any]:
    result = await call(client, tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def read_text(client: Client, uri: str) -> str:
    result = await client.read_resource(uri, cache_mode="bypass")
    (content,) = result.contents
    assert isinstance(content, TextResourceContents)
    return content.text


async def read_or_refused(client: Client, uri: str) -> dict[str, Any] | None:
    """A resource's JSON, or None when it was refused as INVALID_PARAMS (in clean words)."""
    try:
        return json.loads(await read_text(client, uri))
    except MCPError as err:
        invalid_params(err)
        return None


def session_uri(user_id: str, session_id: str) -> str:
    return f"reflexio://users/{quote(user_id, safe='')}/sessions/{quote(session_id, safe='')}"


def user_uri(user_id: str) -> str:
    return f"reflexio://users/{quote(user_id, safe='')}/interactions"


def raw_cursor(payload: Any) -> str:
    """A tool cursor as the server makes them (compressed JSON), around any payload."""
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return packed(raw)


def packed(raw: bytes) -> str:
    return "z" + base64.urlsafe_b64encode(zlib.compress(raw)).decode().rstrip("=")


AT_START: dict[str, dict[str, int]] = {
    "position": {
        "last_created": 2**40, "last_id": 50, "floor_created": 0, "floor_id": 0, "max_id": 50
    }
}  # fmt: skip
"""A well-formed position of a newest-first listing, so that a cursor is refused for its
request alone."""


async def pages(client: Client, tool: str, arguments: Args, budget: int) -> list[dict[str, Any]]:
    """Every page of a listing, following next_cursor; each checked against the budget."""
    listing: list[dict[str, Any]] = []
    result = await call(client, tool, arguments)
    while True:
        text = text_of(result)
        assert not result.is_error, text
        assert len(text) <= budget + SLACK, (
            f"page {len(listing) + 1} of {tool} is {len(text)} characters, budget {budget}"
        )
        page = result.structured_content
        assert page is not None
        assert page["count"] == len(page["interactions"])
        cursor = page["next_cursor"]
        assert page["truncated"] == (cursor is not None), page["truncated"]
        listing.append(page)
        if cursor is None:
            return listing
        assert page["interactions"], "a truncated page that shows nothing"
        assert len(listing) <= 1_000, "next_cursor never ends"
        result = await call(client, tool, {"cursor": cursor})


def ids_of(listing: list[dict[str, Any]]) -> list[int]:
    return [turn["interaction_id"] for page in listing for turn in page["interactions"]]


_CUT = re.compile(r"interaction\(s\) ([0-9, ]+) was cut")


def cut_ids(page: dict[str, Any]) -> set[int]:
    match = _CUT.search(page.get("note") or "")
    return {int(i) for i in match.group(1).split(", ")} if match else set()


# =============================================================================================
# Minimal reproductions of the faults found (each fails until fixed)
# =============================================================================================

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


async def test_a_search_page_stays_within_the_budget_whatever_the_query_length(
    tmp_path: Path,
) -> None:
    """The cursor carries the query verbatim (up to 10,000 characters, base64 adds a third),
    while fit_page keeps only ENVELOPE_CHARS for everything around the turns."""
    budget = MIN_BUDGET
    async with Client(build_server(settings(tmp_path, max_result_chars=budget))) as client:
        turns = [{"content": f"gardening note {n} " + "x" * 300} for n in range(6)]
        await ok(client, "publish_interaction", {"interactions": turns})
        query = "gardening" + "\n" * 5_000
        listing = await pages(client, "search_interactions", {"query": query}, budget)
    assert len(ids_of(listing)) == 6


@pytest.mark.parametrize(
    "turn",
    [
        {
            "content": "big",
            "role": "r" * 1000,
            "interacted_image_url": "https://x.test/" + "a" * 2000,
        },
        {
            "content": "\x01" * 5000,
            "expert_content": "\x02" * 5000,
            "user_action_description": "\x03" * 5000,
            "tools_used": [{"tool_name": "t", "tool_data": {"out": "\x04" * 5000}}],
        },
    ],
    ids=["long-role-and-image-url", "control-characters"],
)
async def test_a_lone_turn_larger_than_the_budget_is_cut_to_fit_it(
    tmp_path: Path, turn: Args
) -> None:
    """_cut_to cuts only content, expert_content, user_action_description and tools_used, and
    stops at MIN_FIELD_CHARS characters each, which JSON escapes up to six times over."""
    budget = MIN_BUDGET
    async with Client(build_server(settings(tmp_path, max_result_chars=budget))) as client:
        await ok(client, "publish_interaction", {"interactions": [turn]})
        listing = await pages(client, "get_interactions", {}, budget)
    assert len(ids_of(listing)) == 1


async def test_a_page_of_ordinary_turns_stays_within_the_budget(tmp_path: Path) -> None:
    """fit_page measures compact JSON (model_dump_json), but the text the model reads is the
    SDK's JSON indented by 2 (func_metadata: pydantic_core.to_json(result, indent=2)): ten
    lines of indentation per turn, more per tool used. A page of short turns that each used one
    tool comes out about 1.65 times the budget (at the default 40,000: 65,000 characters)."""
    budget = 10_000
    tool = {"tool_name": "grep", "tool_data": {"pattern": "x", "paths": ["a", "b"]}}
    turns = [{"content": f"ok {n}", "tools_used": [tool]} for n in range(100)]
    async with Client(build_server(settings(tmp_path, max_result_chars=budget))) as client:
        await ok(client, "publish_interaction", {"interactions": turns})
        listing = await pages(client, "get_interactions", {"top_k": 100}, budget)
    assert len(ids_of(listing)) == 100


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("meanwhile", ["publish", "delete"])
async def test_pages_show_each_turn_once_when_the_store_changes_between_them(
    tmp_path: Path, tool: str, meanwhile: str
) -> None:
    """A cursor is the request plus how many results were shown, so a turn published (in the
    same second as the newest listed, for get_interactions) or deleted between two pages shifts
    the rest of the listing: a turn is shown twice, or never."""
    budget = MIN_BUDGET
    when = 1_700_000_000
    arguments: Args = {"top_k": 20}
    if tool == "search_interactions":
        arguments["query"] = "gardening"
    server = build_server(
        settings(tmp_path, max_result_chars=budget, allow_admin=True, no_confirm=True)
    )
    async with Client(server) as client:
        turns = [
            {"content": f"gardening note {n} " + "x" * 400, "created_at": when} for n in range(8)
        ]
        await ok(client, "publish_interaction", {"interactions": turns})
        first = await ok(client, tool, arguments)
        assert first["truncated"]
        listed = [turn["interaction_id"] for turn in first["interactions"]]
        expected = set(ids_of(await pages(client, tool, arguments, 10**9)))
        if meanwhile == "publish":
            new = {"content": "gardening again " + "x" * 400, "created_at": when}
            await ok(client, "publish_interaction", {"interactions": [new]})
        else:
            gone = listed[0]
            await ok(client, "delete_interaction", {"interaction_id": gone})
            expected.discard(gone)
        rest = await pages(client, tool, {"cursor": first["next_cursor"]}, budget)
    seen = listed + ids_of(rest)
    assert len(seen) == len(set(seen)), f"shown twice: {seen}"
    assert expected <= set(seen), f"never shown: {sorted(expected - set(seen))}"


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
# Paging: any listing, any budget, any turns
# =============================================================================================

REFERENCE_BUDGET = 10_000_000
PAGE_BUDGETS = (MIN_BUDGET, 3_333, 8_000)
LATER = 2_000_000_000
"""Turns of paging examples are stamped from here on, each example later than the last, so
that get_all_interactions lists the example's own turns first."""
PIECES = ["gardening", "a", "寿司", "😀", "\x00", "\x1f", "\n", '"', "\\", "\u2028", " ", "é"]


def repeated(sizes: list[int]) -> SearchStrategy[str]:
    return st.tuples(st.sampled_from(PIECES), st.sampled_from(sizes)).map(
        lambda pair: (pair[0] * pair[1])[: pair[1]]
    )


def text_up_to(limit: int) -> SearchStrategy[str]:
    sizes = [n for n in (1, 50, 300, 1_500, 6_000, 25_000) if n <= limit]
    return st.one_of(st.text(max_size=30), repeated(sizes))


JSON: SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def _output(text: str) -> Args:
    return {"output": text}


def _deep(levels: int, as_list: bool) -> Args:
    return {"deep": nested(levels, as_list)}


def _said(said: str, more: Args) -> Args:
    return {"content": "gardening " + said, **more}


TOOL_DATA: SearchStrategy[Any] = st.one_of(
    st.dictionaries(st.text(max_size=8), JSON, max_size=3),
    st.builds(_output, text_up_to(25_000)),
    st.builds(_deep, st.integers(1, MAX_TOOL_DATA_DEPTH - 2), st.booleans()),
)
PAGED_TURN: SearchStrategy[Args] = st.builds(
    _said,
    text_up_to(25_000),
    st.fixed_dictionaries(
        {},
        optional={
            "expert_content": text_up_to(25_000),
            "user_action_description": text_up_to(9_000),
            "role": st.sampled_from(["user", "assistant", "寿司", "r" * 1000]),
            "interacted_image_url": st.sampled_from(
                ["https://x.test/a.png", "https://x.test/" + "u" * (2048 - 15)]
            ),
            "tools_used": st.lists(
                st.fixed_dictionaries(
                    {"tool_name": st.sampled_from(["grep", "t" * 1000])},
                    optional={
                        "tool_data": TOOL_DATA,
                        "status": st.sampled_from(["ok", "s" * MAX_TOOL_STATUS_CHARS]),
                    },
                ),
                max_size=2,
            ),
            "created_at": st.sampled_from([0, 1, 2]),  # seconds after the example's start
        },
    ),
)


def _listing(tool: str, top_k: int, query: str) -> tuple[str, Args]:
    """A listing's tool and arguments: only a search takes a query."""
    if tool == "search_interactions" and query:
        return tool, {"top_k": top_k, "query": query}
    return tool, {"top_k": top_k}


LISTINGS: SearchStrategy[tuple[str, Args]] = st.builds(
    _listing,
    st.sampled_from(TOOLS),
    st.integers(1, 30),
    st.sampled_from(["gardening", "寿司", "a", "", "gardening 寿司 😀"]),
)


@contextmanager
def paging() -> Generator[Harness]:
    factories = {
        "reference": client_of(max_result_chars=REFERENCE_BUDGET, allow_admin=True),
        **{
            f"budget-{budget}": client_of(max_result_chars=budget, allow_admin=True)
            for budget in PAGE_BUDGETS
        },
    }
    with harness(**factories) as served:
        yield served


def test_following_next_cursor_yields_exactly_the_listing_within_the_budget() -> None:
    with paging() as served:

        @examples(25)
        @given(
            turns=st.lists(PAGED_TURN, min_size=1, max_size=10),
            listing=LISTINGS,
            budget=st.sampled_from(PAGE_BUDGETS),
        )
        def example(turns: list[Args], listing: tuple[str, Args], budget: int) -> None:
            user = fresh("pager")
            start = LATER + 10 * next(_serial)
            turns = [{**turn, "created_at": start + turn.get("created_at", 2)} for turn in turns]
            tool, arguments = listing
            if tool == "get_all_interactions":  # the example's own turns, the newest stored
                arguments = {"top_k": min(arguments["top_k"], len(turns))}
            else:
                arguments = {**arguments, "user_id": user}

            async def run() -> None:
                reference = served["reference"]
                publish = {"user_id": user, "session_id": "s", "interactions": turns}
                await ok(reference, "publish_interaction", publish)
                client = served[f"budget-{budget}"]
                for uri in (user_uri(user), session_uri(user, "s")):
                    document = await read_text(client, uri)
                    assert len(document) <= budget, f"{uri}: {len(document)} characters"
                    assert json.loads(document)["user_id"] == user
                whole = await ok(reference, tool, arguments)
                assert not whole["truncated"], "the reference budget is too small"
                listing = await pages(client, tool, arguments, budget)
                assert ids_of(listing) == [t["interaction_id"] for t in whole["interactions"]]
                originals = {t["interaction_id"]: t for t in whole["interactions"]}
                for page in listing:
                    cut = cut_ids(page)
                    for turn in page["interactions"]:
                        original = originals[turn["interaction_id"]]
                        if turn["interaction_id"] in cut:  # a true prefix, or the note
                            shown = turn["content"].split("… [cut: ")[0]
                            assert shown == TOO_LARGE or original["content"].startswith(shown)
                        else:
                            assert turn == original, f"changed without saying it was cut: {turn}"

            note(f"{tool} {arguments} at budget {budget}")
            served.run(run)

        example()


# --- the store changing between pages, on both backends ---------------------------------------

KEYSET_LATER = 5_000_000_000
"""Turns of these examples are stamped from here on (past LATER and any other test's turns),
each example later than the last, so that get_all_interactions lists the example's own."""
Stamp = tuple[int, int]
"""A turn to publish: seconds after the example's start (-1 is before its first turn), and how
often it says "gardening" (more often matches a search better)."""
STAMPS: SearchStrategy[Stamp] = st.tuples(st.integers(-1, 4), st.integers(1, 4))


def _keyset_listing(tool: str, count: int, most_recent: bool, query: bool) -> tuple[str, Args]:
    if tool != "search_interactions":
        return tool, {"top_k": count}
    return tool, {"most_recent_k" if most_recent else "top_k": count} | (
        {"query": "gardening"} if query else {}
    )


CHANGING_LISTINGS: SearchStrategy[tuple[str, Args]] = st.builds(
    _keyset_listing, st.sampled_from(TOOLS), st.integers(1, 12), st.booleans(), st.booleans()
)


def _stamped_turns(stamps: list[Stamp], start: int) -> list[Args]:
    return [
        {
            "content": "gardening " * strength + f"{fresh('note')} " + "x" * 300,
            "created_at": start + at,
        }
        for at, strength in stamps
    ]


@dataclass
class OpenListing:
    """A listing being paged through: what it held at its first page, and what was shown."""

    tool: str
    expected: list[int]
    owners: dict[int, str]
    seen: list[int]
    cursor: str | None


class ChangingStore(RuleBasedStateMachine):
    """Listings of every tool open at once, paged through in any order, while turns are
    published (past, present, better-matching, the user's own or another user's) and deleted.

    Each listing must show every turn it held at its first page, except those deleted before
    their page, exactly once, in its order, nothing else, and end (next_cursor null) only then.
    """

    served: Harness
    """The clients: `reference` shows any listing whole, `paged` pages at MIN_BUDGET."""

    def __init__(self) -> None:
        super().__init__()
        self.user = fresh("changing")
        self.start = KEYSET_LATER + 10 * next(_serial)
        self.listings: list[OpenListing] = []
        self.deleted: set[int] = set()

    def run(self, step: Callable[[Client, Client], Awaitable[T]]) -> T:
        return self.served.run(lambda: step(self.served["reference"], self.served["paged"]))

    @initialize(stamps=st.lists(STAMPS, min_size=2, max_size=12))
    def seed(self, stamps: list[Stamp]) -> None:
        self.publish(stamps, other_user=False)

    @rule(stamps=st.lists(STAMPS, min_size=1, max_size=4), other_user=st.booleans())
    def publish(self, stamps: list[Stamp], other_user: bool) -> None:
        who = f"{self.user}-other" if other_user else self.user
        publish = {"user_id": who, "interactions": _stamped_turns(stamps, self.start)}
        answer = self.run(lambda reference, _: ok(reference, "publish_interaction", publish))
        assert not answer.get("queued"), "a publish was queued: the listing changes later"

    @rule(listing=CHANGING_LISTINGS)
    def open_listing(self, listing: tuple[str, Args]) -> None:
        tool, arguments = listing
        if tool == "get_all_interactions":  # the newest turns are this example's own
            arguments = {"top_k": min(arguments["top_k"], 3)}
        else:
            arguments = {**arguments, "user_id": self.user}
        note(f"open {tool} {arguments}")

        async def first(reference: Client, paged: Client) -> OpenListing:
            whole = (await ok(reference, tool, arguments))["interactions"]
            page = await ok(paged, tool, arguments)
            return OpenListing(
                tool=tool,
                expected=[t["interaction_id"] for t in whole],
                owners={t["interaction_id"]: t["user_id"] for t in whole},
                seen=[t["interaction_id"] for t in page["interactions"]],
                cursor=page["next_cursor"],
            )

        self.listings.append(self.run(first))

    @precondition(lambda self: any(listing.cursor for listing in self.listings))
    @rule(pick=st.integers(0, 2**16))
    def next_page(self, pick: int) -> None:
        going = [listing for listing in self.listings if listing.cursor]
        listing = going[pick % len(going)]
        arguments = {"cursor": listing.cursor}
        page = self.run(lambda _, paged: ok(paged, listing.tool, arguments))
        listing.seen += [t["interaction_id"] for t in page["interactions"]]
        listing.cursor = page["next_cursor"]

    @precondition(lambda self: any(listing.expected for listing in self.listings))
    @rule(pick=st.integers(0, 2**16))
    def delete(self, pick: int) -> None:
        owners = {i: o for listing in self.listings for i, o in listing.owners.items()}
        present = sorted(set(owners) - self.deleted)
        if not present:
            return
        target = present[pick % len(present)]
        arguments: Args = {"user_id": owners[target], "interaction_id": target}
        self.run(lambda reference, _: ok(reference, "delete_interaction", arguments))
        self.deleted.add(target)

    def teardown(self) -> None:
        for listing in self.listings:
            if listing.cursor is not None:
                tool, arguments = listing.tool, {"cursor": listing.cursor}

                async def rest(_: Client, paged: Client) -> list[dict[str, Any]]:
                    return await pages(paged, tool, arguments, MIN_BUDGET)  # noqa: B023

                listing.seen += ids_of(self.run(rest))
            seen, expected = listing.seen, listing.expected
            assert len(seen) == len(set(seen)), f"{listing.tool} showed some twice: {seen}"
            assert set(seen) <= set(expected), f"not in the listing: {set(seen) - set(expected)}"
            missed = [i for i in expected if i not in seen and i not in self.deleted]
            assert not missed, f"{listing.tool} never showed {missed} of {expected}"
            assert seen == [i for i in expected if i in seen], f"out of order: {seen}"


@pytest.mark.parametrize("kind", ["embedded", "reflexio"])
def test_pages_show_the_first_pages_listing_once_whatever_changes_between_them(
    kind: str, request: pytest.FixtureRequest
) -> None:
    options: Args = {"allow_admin": True, "no_confirm": True}
    if kind == "reflexio":  # unpaced: a publish is stored when it answers, never queued
        server: RunningServer = request.getfixturevalue("lone_reflexio")
        options |= {"url": server.url, "publish_rate": 0}
    else:
        options["backend"] = "embedded"

    def client(budget: int) -> ClientFactory:
        return lambda data_dir: Client(
            build_server(Settings(data_dir=data_dir, max_result_chars=budget, **options))
        )

    with harness(reference=client(REFERENCE_BUDGET), paged=client(MIN_BUDGET)) as served:

        class Machine(ChangingStore):
            pass

        Machine.served = served
        run_state_machine_as_test(
            Machine, settings=hypothesis.settings(examples(15), stateful_step_count=12)
        )


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


# =============================================================================================
# publish_batch
# =============================================================================================

GOOD_TURN: SearchStrategy[Args] = st.fixed_dictionaries(
    {"content": st.text(min_size=1, max_size=40).map(lambda text: "said " + text)},
    optional={
        "role": st.sampled_from(["user", "assistant"]),
        "tools_used": st.just([{"tool_name": "t", "tool_data": {"k": [1, "v"]}}]),
    },
)
ODD_TURNS: SearchStrategy[Any] = st.lists(
    st.fixed_dictionaries({}, optional={"content": JSON, "role": JSON, "colour": JSON}), max_size=2
)
ODD_ITEM: SearchStrategy[Any] = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "interactions": ODD_TURNS | JSON,
            "user_message": JSON,
            "agent_response": JSON,
            "user_id": st.sampled_from(["ann", "bob", "a/b", "", " x"]) | JSON,
            "session_id": JSON,
            "request_id": JSON,
            "source": st.sampled_from(["mcp", "Chat Bot", ""]) | JSON,
            "wait_for_response": JSON,
        },
    ),
)


@dataclass(frozen=True)
class Good:
    """A valid batch item, with the request_id that makes it idempotent."""

    item: Args
    turns: int


def good_items(user: SearchStrategy[str]) -> SearchStrategy[Good]:
    def build(turns: list[Args] | None, user_id: str, shortcut: bool) -> Good:
        item: Args = {"request_id": fresh("batch"), "session_id": fresh("s")}
        if user_id:
            item["user_id"] = user_id
        if shortcut or not turns:
            return Good({**item, "user_message": "hello", "agent_response": "world"}, 2)
        return Good({**item, "interactions": turns}, len(turns))

    return st.builds(build, st.lists(GOOD_TURN, max_size=3), user, st.booleans())


def test_a_batch_answers_every_item_and_stores_the_good_ones_once() -> None:
    with harness(client=client_of(), pinned=client_of(user_id=PINNED, pin_user=True)) as served:

        @examples(25)
        @given(
            data=st.data(),
            pinned=st.booleans(),
            sends=st.integers(1, 3),
            together=st.booleans(),
        )
        def example(data: st.DataObject, pinned: bool, sends: int, together: bool) -> None:
            users = st.sampled_from(["", PINNED] if pinned else ["", "ann", "bob", "東京"])
            items: list[Any] = data.draw(
                st.lists(st.one_of(good_items(users), ODD_ITEM), min_size=1, max_size=8),
                label="items",
            )
            client = served["pinned" if pinned else "client"]
            wire = [item.item if isinstance(item, Good) else item for item in items]
            answers: list[list[dict[str, Any]]] = []

            async def send() -> None:
                result = await call(client, "publish_batch", {"publishes": wire})
                assert not result.is_error, text_of(result)
                answer = result.structured_content
                assert answer is not None
                assert answer["succeeded"] + answer["failed"] == answer["count"] == len(items)
                answers.append(answer["results"])

            async def run() -> None:
                if together:  # the same batch sent again before the first answered
                    async with anyio.create_task_group() as tasks:
                        for _ in range(sends):
                            tasks.start_soon(send)
                else:
                    for _ in range(sends):
                        await send()
                for index, item in enumerate(items):
                    outcomes = [results[index] for results in answers]
                    for outcome in outcomes:
                        assert outcome["index"] == index, outcome
                        if not outcome["ok"]:
                            clean(outcome["message"])
                            assert outcome["message"].startswith("invalid input: "), outcome
                        elif pinned:
                            assert outcome["user_id"] == PINNED, outcome
                    if not isinstance(item, Good):
                        continue
                    statuses = sorted(outcome["status"] for outcome in outcomes)
                    assert statuses == ["already_stored"] * (sends - 1) + ["stored"], outcomes
                    owner = item.item.get("user_id") or (PINNED if pinned else "user-default")
                    arguments: Args = {"request_id": item.item["request_id"], "top_k": 1000}
                    if not pinned:
                        arguments["user_id"] = owner
                    found = await ok(client, "search_interactions", arguments)
                    assert found["count"] == item.turns, (found["count"], item)

            served.run(run)

        example()


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


# =============================================================================================
# Resources: the session template, resources/list cursors and paging
# =============================================================================================

URI_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            PINNED,
            OTHER,
            "%62ob",
            "b%6Fb",
            "Ann",
            "ann%20",
            "%61nn",
            "a:b",
            "..",
            "%2e%2e",
            "a%2Fb",
            "%00",
            "%ZZ",
            "%C3",
            "x?y",
            "x#y",
            "a/b",
            "😀",
            "s%2F1",
            "s/1",
            "%25",
            "",
            " ",
        ]
    ),
)


def test_the_session_template_answers_any_uri_and_never_another_users_turns() -> None:
    with harness(
        admin=client_of(), pinned=client_of("legacy", user_id=PINNED, pin_user=True)
    ) as served:

        async def seed() -> None:
            for user in (PINNED, OTHER, "a:b", "%61nn"):
                for session in ("s/1", "s%2F1", "trip", "%ZZ"):
                    await ok(
                        served["admin"],
                        "publish_interaction",
                        {
                            "user_id": user,
                            "session_id": session,
                            "user_message": f"{user} said",
                            "agent_response": "ok",
                        },
                    )

        served.run(seed)

        @examples(60)
        @given(
            user=URI_TEXT,
            session=URI_TEXT,
            encode=st.sampled_from(["raw", "quoted", "quoted-user"]),
            pinned=st.booleans(),
        )
        def example(user: str, session: str, encode: str, pinned: bool) -> None:
            if encode == "raw":
                uri = f"reflexio://users/{user}/sessions/{session}"
            elif encode == "quoted":
                uri = session_uri(user, session)
            else:
                uri = f"reflexio://users/{quote(user, safe='')}/sessions/{session}"
            document = served.run(
                lambda: read_or_refused(served["pinned" if pinned else "admin"], uri)
            )
            if document is None:
                return
            owner = document["user_id"]
            if pinned:
                assert owner == PINNED, uri
            if encode == "quoted":
                assert (owner, document["session_id"]) == (user, session), uri
            USER_ID.validate_python(owner)
            SESSION_ID.validate_python(document["session_id"])
            assert {t["user_id"] for t in document["interactions"]} <= {owner}, uri

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


def test_resources_list_pages_through_every_session_once() -> None:
    with tempfile.TemporaryDirectory() as tmp, start_blocking_portal() as portal:

        @examples(6)
        @given(
            count=st.integers(0, 2 * PAGE_SIZE + 5),
            odd=st.sampled_from(["s", "s/", "寿司 ", "a%2F", "%"]),
        )
        def example(count: int, odd: str) -> None:
            user = fresh("lister")

            async def run() -> None:
                server = build_server(settings(Path(tmp), user_id=user))
                with anyio.fail_after(CALL_SECONDS):
                    await listed_sessions(server, user, count, odd)

            portal.call(run)

        example()


async def listed_sessions(server: Any, user: str, count: int, odd: str) -> None:
    """Publish `count` sessions for `user` (the server's own user), then page resources/list
    through them: each listed once, no page over PAGE_SIZE."""
    async with Client(server) as client:
        sessions = [f"{odd}{n}" for n in range(count)]
        for start in range(0, count, 100):
            items = [
                {"session_id": s, "user_message": "a", "agent_response": "b"}
                for s in sessions[start : start + 100]
            ]
            answer = await ok(client, "publish_batch", {"publishes": items})
            assert answer["failed"] == 0, answer
        seen: list[str] = []
        listed = await client.list_resources(cache_mode="bypass")
        while True:
            assert len(listed.resources) <= PAGE_SIZE
            seen += [str(r.uri) for r in listed.resources if "/sessions/" in str(r.uri)]
            if listed.next_cursor is None:
                break
            assert len(seen) <= count + PAGE_SIZE, "nextCursor never ends"
            listed = await client.list_resources(cursor=listed.next_cursor, cache_mode="bypass")
        assert len(seen) == len(set(seen)), "a session listed twice"
        assert set(seen) == {session_uri(user, s) for s in sessions}


# =============================================================================================
# Completions
# =============================================================================================

SESSIONS_TEMPLATE = "reflexio://users/{user_id}/sessions/{session_id}"
USERS_TEMPLATE = "reflexio://users/{user_id}/interactions"
REFS: SearchStrategy[PromptReference | ResourceTemplateReference] = st.one_of(
    st.builds(
        ResourceTemplateReference,
        uri=st.sampled_from([SESSIONS_TEMPLATE, USERS_TEMPLATE, "reflexio://status", "x"])
        | st.text(max_size=30),
    ),
    st.builds(
        PromptReference,
        name=st.sampled_from(["recall", "remember_this_conversation", "nope"])
        | st.text(max_size=20),
    ),
)
COMPLETION_TEXT = st.one_of(
    st.sampled_from(
        ["", "a", "b", "bo", OTHER, PINNED, "%62", "bob-", "ann-", "s", "\x00", "%", "_", "'"]
    ),
    st.text(max_size=20),
    st.just("x" * (MAX_ID_CHARS + 1)),
)


def test_completions_answer_anything_and_offer_a_pinned_caller_only_its_own() -> None:
    with harness(admin=client_of(), pinned=client_of(user_id=PINNED, pin_user=True)) as served:
        sessions = {
            PINNED: ["ann-trip", "ann-work"],
            OTHER: ["bob-trip", "bob-secret"],
            "bo%": ["bo%-s"],
        }

        async def seed() -> None:
            for user, names in sessions.items():
                for session in names:
                    await ok(
                        served["admin"],
                        "publish_interaction",
                        {
                            "user_id": user,
                            "session_id": session,
                            "user_message": "a",
                            "agent_response": "b",
                        },
                    )

        served.run(seed)
        others = {OTHER, "bo%", *sessions[OTHER], *sessions["bo%"]}

        @examples(60)
        @given(
            ref=REFS,
            name=st.sampled_from(["user_id", "session_id", "topic", ""]) | st.text(max_size=10),
            value=COMPLETION_TEXT,
            context=st.none()
            | st.dictionaries(
                st.sampled_from(["user_id", "session_id", "x"]) | st.text(max_size=5),
                COMPLETION_TEXT,
                max_size=3,
            ),
            pinned=st.booleans(),
        )
        def example(
            ref: PromptReference | ResourceTemplateReference,
            name: str,
            value: str,
            context: dict[str, str] | None,
            pinned: bool,
        ) -> None:
            client = served["pinned" if pinned else "admin"]

            async def run() -> list[str] | None:
                try:
                    answer = await client.complete(ref, {"name": name, "value": value}, context)
                except MCPError as err:
                    invalid_params(err)
                    return None
                return answer.completion.values

            values = served.run(run)
            if values is None:
                return
            assert len(values) <= 100
            assert all(v.startswith(value) for v in values), values
            if pinned:
                assert not others & set(values), values

        example()


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


# =============================================================================================
# Subscriptions of a pinned caller, on both eras
# =============================================================================================


def test_a_pinned_caller_subscribes_to_its_own_resources_only() -> None:
    with harness(
        admin=client_of(),
        legacy=client_of("legacy", user_id=PINNED, pin_user=True),
        modern=client_of("auto", user_id=PINNED, pin_user=True),
    ) as served:

        @examples(40)
        @given(
            user=URI_TEXT,
            tail=st.sampled_from(
                ["/interactions", "/sessions/s", "/sessions/", "", "/x", "?a=/interactions"]
            ),
            scheme=st.sampled_from(
                [
                    "reflexio://users/",
                    "REFLEXIO://users/",
                    "reflexio://Users/",
                    " reflexio://users/",
                ]
            ),
            era=st.sampled_from(["legacy", "modern"]),
        )
        def example(user: str, tail: str, scheme: str, era: str) -> None:
            uri = f"{scheme}{user}{tail}"

            async def run() -> bool:
                client = served[era]
                try:
                    if era == "legacy":
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", MCPDeprecationWarning)
                            await client.subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                            await client.unsubscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                    else:
                        async with client.listen(resource_subscriptions=[uri]):
                            pass
                except MCPError as err:
                    invalid_params(err)
                    return False
                return True

            accepted = served.run(run)
            owner_named = scheme == "reflexio://users/" and user not in ("", PINNED)
            if accepted and owner_named:
                # Accepted: then the URI names no other user, however it is decoded.
                head = re.split(r"[/?#]", user, maxsplit=1)[0]
                assert unquote(head) in ("", PINNED), uri

        example()


# =============================================================================================
# Subscriptions: told of exactly the watched resources a publish changed, however spelled
# =============================================================================================

WATCH_USERS = ["a b", "a+b", "a:b", "東京", "x%y", "plain"]
WATCH_SESSIONS = ["s/1", "s 2", "%", "寿司", "t"]
_ALWAYS_ENCODED = "/?#%"


def spelled(text: str, choices: list[int]) -> str:
    """`text` percent-encoded character by character as `choices` say: 0 raw (unless it must
    be encoded), 1 upper-case hex, 2 lower-case hex."""
    out: list[str] = []
    for char, choice in zip(text, itertools.cycle(choices or [0]), strict=False):
        if choice == 0 and char not in _ALWAYS_ENCODED:
            out.append(char)
        else:
            encoded = quote(char, safe="")
            if encoded == char:  # unreserved: quote leaves it as is
                encoded = "".join(f"%{byte:02X}" for byte in char.encode())
            out.append(encoded.lower() if choice == 2 else encoded)
    return "".join(out)


def _watched(
    user: str, session: str, user_choices: list[int], session_choices: list[int], kind: str
) -> str:
    owner = spelled(user, user_choices)
    if kind == "user":
        return f"reflexio://users/{owner}/interactions"
    return f"reflexio://users/{owner}/sessions/{spelled(session, session_choices)}"


WATCHED: SearchStrategy[str] = st.builds(
    _watched,
    st.sampled_from(WATCH_USERS),
    st.sampled_from(WATCH_SESSIONS),
    st.lists(st.integers(0, 2), max_size=4),
    st.lists(st.integers(0, 2), max_size=4),
    st.sampled_from(["user", "session"]),
)


def test_a_subscriber_is_told_of_exactly_what_a_publish_changed() -> None:
    told: list[str] = []

    async def legacy_told(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            told.append(message.params.uri)

    with harness(
        legacy=client_of("legacy", messages=legacy_told), modern=client_of("auto")
    ) as served:

        @examples(20)
        @given(
            watched=st.lists(WATCHED, min_size=1, max_size=6, unique=True),
            user=st.sampled_from(WATCH_USERS),
            session=st.sampled_from(WATCH_SESSIONS),
            era=st.sampled_from(["legacy", "modern"]),
        )
        def example(watched: list[str], user: str, session: str, era: str) -> None:
            async def documents() -> dict[str, str]:
                return {uri: await read_text(served[era], uri) for uri in watched}

            async def publish() -> None:
                await ok(
                    served[era],
                    "publish_interaction",
                    {
                        "user_id": user,
                        "session_id": session,
                        "user_message": fresh("m"),
                        "agent_response": "r",
                    },
                )

            async def run() -> tuple[set[str], set[str]]:
                before = await documents()
                heard: set[str] = set()
                if era == "legacy":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", MCPDeprecationWarning)
                        for uri in watched:
                            await served[era].subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                        told.clear()
                        await publish()
                        await anyio.sleep(0.05)
                        heard = set(told)
                        for uri in watched:
                            await served[era].unsubscribe_resource(uri)  # pyright: ignore[reportDeprecated]
                else:
                    async with served[era].listen(resource_subscriptions=watched) as sub:
                        await publish()
                        while True:
                            with anyio.move_on_after(0.1) as quiet:
                                event = await sub.__anext__()
                                if isinstance(event, ResourceUpdated):
                                    heard.add(event.uri)
                            if quiet.cancelled_caught:
                                break
                after = await documents()
                return heard, {uri for uri in watched if before[uri] != after[uri]}

            heard, changed = served.run(run)
            assert heard == changed, f"told {sorted(heard)}, changed {sorted(changed)}"

        example()
