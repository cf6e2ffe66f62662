"""What the fuzzing of the MCP surface shares (tests/fuzz/test_*_fuzz.py of issue 9):
in-process servers on a throwaway embedded store driven from a portal, fake secrets built
from pieces (so that no secret scanner trips on this file), the checks every answer must
pass, and helpers that page through a listing or read a resource.

Each property runs a few dozen examples by default (derandomized: the same ones every run);
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples of every property, drawn at random, for a
longer campaign.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import tempfile
import zlib
from collections.abc import Awaitable, Callable, Generator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import hypothesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.session import ElicitationFnT, MessageHandlerFnT
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent, TextResourceContents
from pydantic import TypeAdapter

from reflexio_mcp.app import build_server
from reflexio_mcp.core.fields import Identifier, UserId
from reflexio_mcp.settings import Settings

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


serial = itertools.count()
"""Numbers no example took before: fresh() names, and the paging examples' timestamps."""


def fresh(prefix: str) -> str:
    """A name no other example used (users, sessions, request ids)."""
    return f"{prefix}-{next(serial)}"


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


JSON: SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
