"""Acknowledged means kept, as sent: what the bridge accepts, the real Reflexio keeps turn for
turn and field for field; what Reflexio would drop, refuse or cut, the bridge refuses up front,
naming the field and the fix, on both backends alike.

Reflexio 0.2.32's rules (read in its source: InteractionData.shape_error / carries_content,
ToolUsed.coerce_status, _validate_image_url) are declared once, in reflexio_mcp.core.models. The
regression tests below publish through a real MCP client and read back from the real server;
the property test generates publishes that break and keep those rules. It hits a real server,
so it runs few examples by default: REFLEXIO_MCP_FUZZ_EXAMPLES sets more (default 30 here).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import hypothesis
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.core.limits import MAX_BODY_BYTES, MAX_TIMESTAMP
from reflexio_mcp.core.models import InteractionData, PublishRequest
from reflexio_mcp.settings import Settings
from tests.support.reflexio_server import RunningServer, free_port
from tests.support.tool_calls import call, error, text

EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "30"))
HEADERS = {"User-Agent": "reflexio-mcp-tests"}
LEAKS = ("Traceback", "pydantic", "Error executing tool", "validation error for")


def held_by_reflexio(server: RunningServer, user_id: str) -> list[dict[str, Any]]:
    """What the real server holds for the user, oldest first: read from it, not the bridge."""
    answer = httpx2.post(
        f"{server.url}/api/get_interactions",
        json={"user_id": user_id, "top_k": 1000},
        headers=HEADERS,
        timeout=30,
    )
    answer.raise_for_status()
    return sorted(answer.json()["interactions"], key=lambda i: i["interaction_id"])


def images_held(server: RunningServer, user_id: str) -> list[str]:
    """The image_encoding of each of the user's turns, oldest first: Reflexio's API does not
    return it, so it is read from the server's own SQLite file (read-only)."""
    path = server.home / ".reflexio/data/reflexio_self-host-org.db"
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT image_encoding FROM interactions WHERE user_id = ? ORDER BY interaction_id",
            (user_id,),
        ).fetchall()
    return [str(row[0]) for row in rows]


def request_held(server: RunningServer, user_id: str) -> dict[str, Any]:
    """The one publish (request) the server holds for the user."""
    answer = httpx2.post(
        f"{server.url}/api/get_requests",
        json={"user_id": user_id, "top_k": 10},
        headers=HEADERS,
        timeout=30,
    )
    answer.raise_for_status()
    (session,) = answer.json()["sessions"]
    (request,) = session["requests"]
    return {"session_id": session["session_id"], **request["request"]}


def as_kept(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn as sent, in the shape a backend reads it back (defaults filled in)."""
    kept = {
        "role": turn.get("role", "User"),
        "content": turn.get("content", ""),
        "expert_content": turn.get("expert_content", ""),
        "user_action": str(turn.get("user_action", "none")).lower(),
        "user_action_description": turn.get("user_action_description", ""),
        "interacted_image_url": turn.get("interacted_image_url", ""),
        "tools_used": [
            {
                "tool_name": tool["tool_name"],
                "tool_data": tool.get("tool_data", {}),
                "status": tool.get("status", ""),
            }
            for tool in turn.get("tools_used", [])
        ],
    }
    if turn.get("created_at") is not None:
        kept["created_at"] = turn["created_at"]
    return kept


def read_as_sent(read: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    return {name: read.get(name) for name in as_kept(sent)}


@pytest.fixture
def reflexio_settings(reflexio: RunningServer, tmp_path: Path) -> Settings:
    return Settings(url=reflexio.url, data_dir=tmp_path, keep_secrets=True)


@pytest.fixture
async def on_reflexio(reflexio_settings: Settings) -> AsyncGenerator[Client]:
    async with Client(build_server(reflexio_settings)) as client:
        yield client


@pytest.fixture
async def on_reflexio_down(tmp_path: Path) -> AsyncGenerator[Client]:
    """Forwarding to a Reflexio that is not running: publishes wait in the outbox."""
    settings = Settings(
        url=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path, max_retries=0, timeout=2
    )
    async with Client(build_server(settings)) as client:
        yield client


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncGenerator[Client]:
    settings = Settings(backend="embedded", data_dir=tmp_path / "embedded", keep_secrets=True)
    async with Client(build_server(settings)) as client:
        yield client


# --- item 1: turns Reflexio drops or refuses ------------------------------------------------

DESCRIPTION_ONLY = {"role": "User", "user_action_description": "clicked Buy"}
REFUSED_TURNS = {
    "description-only": (
        DESCRIPTION_ONLY,
        "interactions[0]: a user_action_description alone is not kept by Reflexio",
    ),
    "action-without-description": (
        {"role": "User", "content": "ok", "user_action": "click"},
        "interactions[0].user_action_description: required with user_action 'click'",
    ),
    "image-url-and-encoding": (
        {"content": "look", "interacted_image_url": "https://127.0.0.1/a.png",
         "image_encoding": "aGk="},
        "interactions[0].image_encoding: give interacted_image_url or image_encoding, not both",
    ),
}  # fmt: skip


async def test_description_only_turn_beside_others_is_refused_not_counted_and_dropped(
    on_reflexio: Client, reflexio: RunningServer, user_id: str
) -> None:
    """Reflexio 0.2.32 silently skipped it: the tool said stored 2, Reflexio held 1."""
    turns = [{"role": "User", "content": "I want the blue one"}, DESCRIPTION_ONLY]
    message = await error(
        on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": turns}
    )
    assert message.startswith(
        "invalid input: interactions[1]: a user_action_description alone is not kept by Reflexio"
    ), message
    assert "set the user_action it describes" in message
    assert held_by_reflexio(reflexio, user_id) == []


@pytest.mark.parametrize("shape", REFUSED_TURNS)
async def test_turn_reflexio_refuses_is_refused_up_front_while_reflexio_is_down(
    on_reflexio_down: Client, shape: str
) -> None:
    """Was answered `queued` while Reflexio was down, then ended `failed` with 0 turns."""
    turn, expected = REFUSED_TURNS[shape]
    message = await error(on_reflexio_down, "publish_interaction", {"interactions": [turn]})
    assert message.startswith(f"invalid input: {expected}"), message


@pytest.mark.parametrize("shape", REFUSED_TURNS)
async def test_turn_reflexio_refuses_is_refused_alike_by_both_backends(
    on_reflexio: Client, embedded: Client, reflexio: RunningServer, user_id: str, shape: str
) -> None:
    turn, expected = REFUSED_TURNS[shape]
    arguments = {"user_id": user_id, "interactions": [{"content": "first"}, turn]}
    for client in (on_reflexio, embedded):
        message = await error(client, "publish_interaction", arguments)
        assert message.startswith(f"invalid input: {expected.replace('[0]', '[1]')}"), message
    assert held_by_reflexio(reflexio, user_id) == []
    listed = await call(embedded, "get_interactions", {"user_id": user_id})
    assert listed["count"] == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://127.0.0.1/a.png", "the scheme must be http, https or data (got 'ftp')"),
        ("picture.png", "the scheme must be http, https or data (got none)"),
        ("http://169.254.169.254/latest/meta-data", "must not point at a cloud metadata"),
        ("http://2852039166/x.png", "must not point at a cloud metadata"),
        ("http://[fd00:ec2::254]/x.png", "must not point at a cloud metadata"),
        ("http://metadata.google.internal/x", "must not point at a cloud metadata"),
        ("http://[::1/a.png", "is not a URL"),
    ],
)
async def test_image_url_reflexio_refuses_is_refused_up_front(
    on_reflexio_down: Client, embedded: Client, url: str, expected: str
) -> None:
    turn = {"content": "look", "interacted_image_url": url}
    for client in (on_reflexio_down, embedded):
        message = await error(client, "publish_interaction", {"interactions": [turn]})
        assert message.startswith("invalid input: interactions[0].interacted_image_url: "), message
        assert expected in message, message


@pytest.mark.parametrize("kind", ["reflexio-down", "embedded"])
async def test_image_url_whose_password_redaction_would_break_is_refused_up_front(
    tmp_path: Path, kind: str
) -> None:
    """Redaction makes https://user:[REDACTED:url-password]@host/..., which is no URL to
    Reflexio (urlsplit reads the brackets as an IPv6 host): queued, then refused for good."""
    url = f"http://127.0.0.1:{free_port()}" if kind == "reflexio-down" else None
    settings = Settings(
        url=url, backend="embedded" if url is None else "auto", data_dir=tmp_path, timeout=2
    )
    turn = {"content": "look", "interacted_image_url": "https://me:Zq8vR2wXk9@127.0.0.1/a.png"}
    async with Client(build_server(settings)) as client:
        message = await error(client, "publish_interaction", {"interactions": [turn]})
    assert message.startswith("invalid input: interactions[0].interacted_image_url: is not a URL")
    assert message.endswith("(once its 1 secret(s) were replaced by [REDACTED:...] markers)")
    assert "Zq8vR2wXk9" not in message


@pytest.mark.parametrize(
    "turn",
    [
        {"content": "x", "user_action": "CLICK", "user_action_description": " "},
        {"role": "Agent", "tools_used": [{"tool_name": "search"}]},
        {"interacted_image_url": "HTTPS://127.0.0.1/a.png"},
        {"interacted_image_url": "data:image/png;base64,aGk="},
        {"image_encoding": "aGk="},
        {"expert_content": "what an expert says"},
        {"user_action": "scroll", "user_action_description": "to the end"},
    ],
)
async def test_turn_reflexio_keeps_is_kept_whole(
    on_reflexio: Client, reflexio: RunningServer, user_id: str, turn: dict[str, Any]
) -> None:
    published = await call(
        on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [turn]}
    )
    assert (published["status"], published["stored"], published["warnings"]) == ("stored", 1, [])
    (held,) = held_by_reflexio(reflexio, user_id)
    assert read_as_sent(held, turn) == as_kept(turn)


# --- item 4: every field limit is Reflexio's ------------------------------------------------

TURN_LIMITS = {
    "role": 1000,
    "content": 1_000_000,
    "expert_content": 1_000_000,
    "user_action_description": 10_000,
    "interacted_image_url": 2048,
}


def long_value(field: str, length: int) -> str:
    if field == "interacted_image_url":
        prefix = "https://127.0.0.1/"
        return prefix + "a" * (length - len(prefix))
    return "é" * length  # one character, two UTF-8 bytes: limits count characters


def with_field(field: str, value: Any) -> dict[str, Any]:
    turn = {"content": "x", field: value}
    if field == "user_action_description":
        turn["user_action"] = "type"
    return turn


@pytest.mark.parametrize("field", TURN_LIMITS)
async def test_turn_field_at_its_limit_is_kept_whole_and_one_more_is_refused(
    on_reflexio: Client, reflexio: RunningServer, user_id: str, field: str
) -> None:
    limit = TURN_LIMITS[field]
    over = with_field(field, long_value(field, limit + 1))
    message = await error(
        on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [over]}
    )
    assert message == (
        f"invalid input: interactions[0].{field}: must have at most {limit:,} characters "
        f"(got {limit + 1:,})"
    )
    at_limit = with_field(field, long_value(field, limit))
    await call(on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [at_limit]})
    (held,) = held_by_reflexio(reflexio, user_id)
    assert held[field] == at_limit[field]


async def test_tool_status_of_101_characters_is_refused_not_cut_to_100(
    on_reflexio: Client, reflexio: RunningServer, user_id: str
) -> None:
    """Reflexio cuts tools_used[].status to 100 characters silently; the bridge took 1,000."""
    over = {"content": "x", "tools_used": [{"tool_name": "t", "status": "s" * 101}]}
    message = await error(
        on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [over]}
    )
    assert message == (
        "invalid input: interactions[0].tools_used[0].status: must have at most 100 characters "
        "(got 101)"
    )
    at_limit = {"content": "x", "tools_used": [{"tool_name": "t", "status": "é" * 100}]}
    await call(on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [at_limit]})
    (held,) = held_by_reflexio(reflexio, user_id)
    assert held["tools_used"] == [{"tool_name": "t", "tool_data": {}, "status": "é" * 100}]


async def test_tool_name_tool_data_and_1000_tools_are_kept_whole(
    on_reflexio: Client, reflexio: RunningServer, user_id: str
) -> None:
    data = {"big": 10**30, "f": 1e300, "tiny": 5e-324, "nul": "\x00", "deep": [[{"a": None}]]}
    tools = [{"tool_name": "n" * 1000, "tool_data": data, "status": "ok"}] * 1000
    over = [{"content": "x", "tools_used": [*tools, {"tool_name": "t"}]}]
    message = await error(
        on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": over}
    )
    assert message == (
        "invalid input: interactions[0].tools_used: must have at most 1000 items (got 1001)"
    )
    turn = {"content": "x", "tools_used": tools}
    await call(on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [turn]})
    (held,) = held_by_reflexio(reflexio, user_id)
    assert held["tools_used"] == tools


async def test_image_encoding_filling_the_10_mib_body_is_kept_whole_and_one_more_is_refused(
    on_reflexio: Client, reflexio: RunningServer, user_id: str
) -> None:
    def arguments(image: str) -> dict[str, Any]:
        turn = {"image_encoding": image}
        return {"user_id": user_id, "interactions": [turn], "request_id": "r", "session_id": "s"}

    sent = PublishRequest(
        request_id="r",
        user_id=user_id,
        session_id="s",
        source="mcp",
        interaction_data_list=[InteractionData(image_encoding="A")],
    )
    image = "A" * (1 + MAX_BODY_BYTES - len(sent.checked_body()))
    message = await error(on_reflexio, "publish_interaction", arguments(image + "A"))
    assert "Reflexio takes at most 10 MiB per publish" in message, message
    published = await call(on_reflexio, "publish_interaction", arguments(image))
    assert (published["status"], published["stored"]) == ("stored", 1)
    assert images_held(reflexio, user_id) == [image]


@pytest.mark.parametrize("created_at", [0, 1, 1_499_999_999_999 // 1000, MAX_TIMESTAMP])
async def test_created_at_in_range_is_kept_to_the_second(
    on_reflexio: Client, reflexio: RunningServer, user_id: str, created_at: int
) -> None:
    turn = {"content": "x", "created_at": created_at}
    await call(on_reflexio, "publish_interaction", {"user_id": user_id, "interactions": [turn]})
    (held,) = held_by_reflexio(reflexio, user_id)
    assert held["created_at"] == created_at


async def test_publish_fields_at_their_limits_are_kept_whole(
    on_reflexio: Client, reflexio: RunningServer, user_id: str
) -> None:
    arguments = {
        "user_id": user_id,
        "interactions": [{"content": "x"}],
        "source": "s" * 128,
        "agent_version": "v" * 1000,
        "session_id": "é" * 256,
        "request_id": "r" * 256,
    }
    for name, value in [("source", "s" * 129), ("agent_version", "v" * 1001),
                        ("session_id", "é" * 257), ("request_id", "r" * 257)]:  # fmt: skip
        message = await error(on_reflexio, "publish_interaction", {**arguments, name: value})
        assert message.startswith(f"invalid input: {name}: "), message
    await call(on_reflexio, "publish_interaction", arguments)
    held = request_held(reflexio, user_id)
    kept = {name: held[name] for name in ("source", "agent_version", "session_id", "request_id")}
    assert kept == {name: arguments[name] for name in kept}


# --- the property: accepted by the bridge means kept by Reflexio ---------------------------

JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
TEXT = st.one_of(st.sampled_from(["", " ", "\n", "\x00", "hello"]), st.text(max_size=30))
IP_HOSTS = ["127.0.0.1", "[::1]", "10.0.0.7", "169.254.169.254", "2852039166", "[fd00:ec2::254]",
            "0xa9fea9fe", "localhost", "[::1", "metadata.google.internal"]  # fmt: skip
"""Hosts that need no DNS: nothing here may send traffic beyond loopback."""


def url(scheme: str, host: str, path: str) -> str:
    return f"{scheme}{host}/{path}"


IMAGE_URL = st.one_of(
    st.just(""),
    st.sampled_from(["data:image/png;base64,aGk=", " ", "no scheme", "mailto:x"]),
    st.builds(
        url,
        st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "", " http://"]),
        st.sampled_from(IP_HOSTS),
        st.text(st.characters(codec="ascii", exclude_characters="/\\"), max_size=10),
    ),
)
TOOL = st.fixed_dictionaries(
    {"tool_name": st.text(max_size=10)},
    optional={
        "tool_data": st.dictionaries(st.text(max_size=5), JSON_VALUE, max_size=3),
        "status": st.one_of(TEXT, st.integers(95, 105).map(lambda n: "s" * n)),
    },
)
ANY_TURN = st.fixed_dictionaries(
    {},
    optional={
        "role": st.one_of(st.sampled_from(["User", "Agent", "", " "]), st.text(max_size=8)),
        "content": TEXT,
        "expert_content": TEXT,
        "user_action": st.sampled_from(["none", "click", "CLICK", "scroll", "type"]),
        "user_action_description": TEXT,
        "interacted_image_url": IMAGE_URL,
        "image_encoding": st.sampled_from(["", " ", "aGk=", "not base64"]),
        "tools_used": st.lists(TOOL, max_size=2),
        "created_at": st.one_of(st.none(), st.integers(0, MAX_TIMESTAMP)),
    },
)
"""Any mix of fields, most breaking one of Reflexio's rules."""
SAID = st.text(min_size=1, max_size=30).filter(str.strip)
KEPT_TOOL = st.fixed_dictionaries(
    {"tool_name": st.text(min_size=1, max_size=10)},
    optional={
        "tool_data": st.dictionaries(st.text(max_size=5), JSON_VALUE, max_size=3),
        "status": st.one_of(st.text(max_size=20), st.just("s" * 100)),
    },
)
NOTHING: SearchStrategy[dict[str, Any]] = st.just({})
IMAGE: SearchStrategy[dict[str, Any]] = st.one_of(
    NOTHING,
    st.fixed_dictionaries({"image_encoding": st.sampled_from(["aGk=", "not base64", " x "])}),
    st.fixed_dictionaries(
        {
            "interacted_image_url": st.sampled_from(
                ["https://127.0.0.1/a.png", "HTTPS://[::1]/é.png", "data:image/png;base64,aGk=",
                 "http://localhost:8080/p?q=1#f", " http://10.0.0.7/x", "data:,"]
            )
        }
    ),
)  # fmt: skip
ACTION: SearchStrategy[dict[str, Any]] = st.one_of(
    NOTHING,
    st.fixed_dictionaries(
        {"user_action": st.sampled_from(["none", "click", "CLICK", "scroll", "type"]),
         "user_action_description": SAID | st.just(" ")},
    ),
)  # fmt: skip


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    return {name: value for part in parts for name, value in part.items()}


KEPT_TURN: SearchStrategy[dict[str, Any]] = st.builds(
    merged,
    st.fixed_dictionaries(
        {"content": SAID},
        optional={
            "role": st.text(min_size=1, max_size=8),
            "expert_content": TEXT,
            "tools_used": st.lists(KEPT_TOOL, max_size=2),
            "created_at": st.one_of(st.none(), st.integers(0, MAX_TIMESTAMP)),
        },
    ),
    IMAGE,
    ACTION,
)
"""A turn Reflexio keeps."""


def changed(turn: dict[str, Any], change: str, length: int, image_url: str) -> dict[str, Any]:
    """A kept turn with one change, near or past one of Reflexio's rules or limits."""
    turn = dict(turn)
    if change == "description only":
        return {"role": turn.get("role", "User"), "user_action_description": "clicked it"}
    if change == "action without description":
        turn.pop("user_action_description", None)
        turn["user_action"] = "click"
    elif change == "two images":
        turn.update(interacted_image_url="https://127.0.0.1/a.png", image_encoding="aGk=")
    elif change == "image url":
        turn.pop("image_encoding", None)
        turn["interacted_image_url"] = image_url
    elif change == "tool status":
        turn["tools_used"] = [{"tool_name": "t", "status": "s" * length}]
    elif change == "blank":
        return {"content": " " * (length % 3), "expert_content": "\n", "image_encoding": " "}
    elif change in ("role", "user_action_description"):
        turn[change] = "r" * (length * (10 if change == "role" else 100))
        turn["user_action"] = "type"
    return turn


CHANGED_TURN = st.builds(
    changed,
    KEPT_TURN,
    st.sampled_from(["description only", "action without description", "two images",
                     "image url", "tool status", "blank", "role", "user_action_description"]),
    st.integers(98, 102),
    IMAGE_URL,
)  # fmt: skip
PUBLISH: SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "interactions": st.lists(
            st.one_of(KEPT_TURN, CHANGED_TURN, ANY_TURN), min_size=1, max_size=3
        )
    },
    optional={"source": st.sampled_from(["", "mcp", "Chat Bad"]), "agent_version": TEXT},
)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


def test_what_the_bridge_accepts_reflexio_keeps_turn_for_turn(
    reflexio: RunningServer, portal: BlockingPortal
) -> None:
    """Both backends give the same verdict on any publish; an accepted one is stored whole, in
    Reflexio (read back from the server itself) and in the embedded store."""
    with tempfile.TemporaryDirectory() as tmp:
        remote = Settings(url=reflexio.url, data_dir=Path(tmp) / "r", keep_secrets=True)
        local = Settings(backend="embedded", data_dir=Path(tmp) / "e", keep_secrets=True)
        with (
            portal.wrap_async_context_manager(Client(build_server(remote))) as on_reflexio,
            portal.wrap_async_context_manager(Client(build_server(local))) as embedded,
        ):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            )
            @given(arguments=PUBLISH)
            def example(arguments: dict[str, Any]) -> None:
                user_id = f"prop-{uuid.uuid4().hex[:12]}"
                arguments = {**arguments, "user_id": user_id}
                answers = [
                    portal.call(client.call_tool, "publish_interaction", arguments)
                    for client in (on_reflexio, embedded)
                ]
                verdicts = [answer.is_error for answer in answers]
                hypothesis.event("refused" if verdicts[0] else "accepted")
                hypothesis.note(f"answers: {[text(a)[:300] for a in answers]}")
                assert verdicts[0] == verdicts[1], "the backends disagree"
                held = held_by_reflexio(reflexio, user_id)
                listed = portal.call(
                    call, embedded, "get_interactions", {"user_id": user_id, "top_k": 1000}
                )
                read_locally = sorted(listed["interactions"], key=lambda i: i["interaction_id"])
                if verdicts[0]:
                    for answer in answers:
                        assert not any(leak in text(answer) for leak in LEAKS), text(answer)
                        assert text(answer).startswith("invalid input: "), text(answer)
                    assert held == read_locally == []
                    return
                for answer in answers:
                    content: dict[str, Any] = answer.structured_content or {}
                    assert content["status"] == "stored", content
                    assert content["stored"] == len(arguments["interactions"]), content
                    assert not any("skipped" in str(w) for w in content["warnings"]), content
                turns: list[dict[str, Any]] = arguments["interactions"]
                sent = [as_kept(turn) for turn in turns]
                assert len(held) == len(read_locally) == len(sent)
                assert [read_as_sent(h, t) for h, t in zip(held, turns, strict=True)] == sent
                images = [turn.get("image_encoding", "") for turn in turns]
                assert images_held(reflexio, user_id) == images
                assert [
                    read_as_sent(r, t) for r, t in zip(read_locally, turns, strict=True)
                ] == sent

            example()
