"""Resources that stay current, in process on the embedded store (the session template's
Reflexio side is in the contract suite): subscribers of both protocol eras hear of publishes
and deletes that change their resources and of nothing else; a pinned caller cannot watch
another user's; resources/list pages through the caller's sessions; every document stays
within the result size budget."""

from __future__ import annotations

import json
import secrets
import time
import warnings
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx2
import pytest
from mcp import Client, MCPDeprecationWarning
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated
from mcp_types import INVALID_PARAMS, TextResourceContents

from reflexio_mcp.app import SharedBackend, build_server
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.durable import ReflexioBackend
from reflexio_mcp.backends.reflexio.outbox import Outbox
from reflexio_mcp.core.models import GetRequest
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.resource_updates import ResourceUpdates
from reflexio_mcp.surface.resources import PAGE_SIZE, make_cursor
from tests.support.mcp_http import call as call_over_http
from tests.support.mcp_http import http_bridge, http_client
from tests.support.resource_updates import (
    QUIET_SECONDS,
    Updates,
    heard,
    legacy_http_client,
    subscribe,
)

STATUS = "reflexio://status"
RECENT = "reflexio://interactions/recent"
DEFAULT_USER = "user-default"
URL = "http://127.0.0.1:8061"


def users(user_id: str) -> str:
    return f"reflexio://users/{quote(user_id, safe='')}/interactions"


def session(user_id: str, session_id: str) -> str:
    return f"reflexio://users/{quote(user_id, safe='')}/sessions/{quote(session_id, safe='')}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(backend="embedded", data_dir=tmp_path, no_confirm=True)


@pytest.fixture
async def mcp(settings: Settings) -> AsyncGenerator[Client]:
    async with Client(build_server(settings)) as client:
        yield client


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def publish(client: Client, user_id: str, session_id: str, text: str = "hello") -> int:
    """Publish one exchange; the id of its first turn."""
    await call(
        client,
        "publish_interaction",
        {
            "user_id": user_id,
            "session_id": session_id,
            "user_message": text,
            "agent_response": "noted",
        },
    )
    listed = await call(client, "get_interactions", {"user_id": user_id, "top_k": 2})
    return int(listed["interactions"][-1]["interaction_id"])


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    (content,) = result.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    return json.loads(content.text)


async def unsubscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.unsubscribe_resource(uri)  # pyright: ignore[reportDeprecated]


# -- 2026-07-28: subscriptions/listen -----------------------------------------------------


async def test_a_listener_hears_a_publish_to_its_resources_and_nothing_else(mcp: Client) -> None:
    watched = [
        STATUS,
        RECENT,
        users("alice"),
        session("alice", "trip"),
        session("alice", "work"),
        users("bob"),
        session("bob", "trip"),
    ]
    async with mcp.listen(resource_subscriptions=watched) as sub:
        await publish(mcp, "alice", "trip")
        assert await heard(sub) == {STATUS, users("alice"), session("alice", "trip")}
        await publish(mcp, DEFAULT_USER, "chat")
        assert await heard(sub) == {STATUS, RECENT}


async def test_a_listener_hears_a_delete_on_every_watched_session_of_that_user(
    mcp: Client,
) -> None:
    turn = await publish(mcp, "alice", "trip")
    watched = [users("alice"), session("alice", "trip"), session("alice", "work"), users("bob")]
    async with mcp.listen(resource_subscriptions=watched) as sub:
        await call(mcp, "delete_interaction", {"user_id": "alice", "interaction_id": turn})
        # A turn does not name its session: every watched session of alice is told.
        assert await heard(sub) == {
            users("alice"),
            session("alice", "trip"),
            session("alice", "work"),
        }


async def test_a_batch_tells_of_every_session_it_stored_to(mcp: Client) -> None:
    exchange = {"user_message": "a", "agent_response": "b"}
    publishes = [
        {**exchange, "user_id": "alice", "session_id": "trip"},
        {**exchange, "user_id": "alice", "session_id": "work"},
        {**exchange, "user_id": "bob", "session_id": "trip"},
        {"user_id": "carol", "session_id": "trip"},  # no turns: refused, stores nothing
    ]
    watched = [users("alice"), session("alice", "trip"), session("alice", "x"), users("carol")]
    async with mcp.listen(resource_subscriptions=watched) as sub:
        batch = await call(mcp, "publish_batch", {"publishes": publishes})
        assert [r["ok"] for r in batch["results"]] == [True, True, True, False]
        assert await heard(sub) == {users("alice"), session("alice", "trip")}


async def test_reads_publishes_and_failed_writes_tell_nothing(mcp: Client) -> None:
    await publish(mcp, "alice", "trip")
    async with mcp.listen(resource_subscriptions=[STATUS, users("alice")]) as sub:
        await call(mcp, "get_interactions", {"user_id": "alice"})
        await mcp.read_resource(users("alice"))
        failed = await mcp.call_tool(
            "delete_interaction", {"user_id": "alice", "interaction_id": 999}
        )
        assert failed.is_error
        again = {"user_id": "alice", "user_message": "x", "agent_response": "y", "request_id": "r1"}
        await call(mcp, "publish_interaction", again)
        assert await heard(sub) == {STATUS, users("alice")}
        stored_twice = await call(mcp, "publish_interaction", again)
        assert stored_twice["status"] == "already_stored"
        assert await heard(sub) == set()


async def test_a_uri_is_matched_however_it_is_percent_encoded(mcp: Client) -> None:
    spelled = ["reflexio://users/a:b/interactions", "reflexio://users/a%3Ab/sessions/s%2F1"]
    async with mcp.listen(resource_subscriptions=spelled) as sub:
        await publish(mcp, "a:b", "s/1")
        assert await heard(sub) == set(spelled)  # each told with its own spelling


async def test_a_listener_asking_for_list_changes_hears_its_own_users_new_turns(
    mcp: Client,
) -> None:
    async with mcp.listen(resources_list_changed=True) as sub:
        await publish(mcp, "alice", "trip")
        with anyio.move_on_after(QUIET_SECONDS) as quiet:
            await sub.__anext__()
        assert quiet.cancelled_caught  # alice's sessions are not what this caller lists
        await publish(mcp, DEFAULT_USER, "chat")
        with anyio.fail_after(5):
            assert isinstance(await sub.__anext__(), ResourcesListChanged)


async def test_a_pinned_caller_cannot_listen_to_another_users_resources(tmp_path: Path) -> None:
    pinned = Settings(backend="embedded", data_dir=tmp_path, pin_user=True, user_id="carol")
    async with Client(build_server(pinned)) as client:
        for other in [users("dave"), session("dave", "s"), "reflexio://users/%64ave/interactions"]:
            with pytest.raises(MCPError) as refused:
                async with client.listen(resource_subscriptions=[users("carol"), other]):
                    pass
            assert refused.value.error.code == INVALID_PARAMS
            assert "acts only for user 'carol'" in refused.value.error.message
            assert "nothing was subscribed" in refused.value.error.message
        async with client.listen(resource_subscriptions=[users("carol"), RECENT, STATUS]) as sub:
            await publish(client, "carol", "s")
            assert await heard(sub) == {users("carol"), RECENT, STATUS}


# -- 2025-11-25: resources/subscribe -------------------------------------------------------


async def test_a_legacy_subscriber_hears_publishes_and_deletes_until_it_unsubscribes(
    settings: Settings,
) -> None:
    told = Updates()
    server = build_server(settings)
    async with Client(server, mode="legacy", message_handler=told) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        for uri in [STATUS, RECENT, users("alice"), session("alice", "trip"), users("bob")]:
            await subscribe(client, uri)
        turn = await publish(client, "alice", "trip")
        assert await told.settled() == {STATUS, users("alice"), session("alice", "trip")}
        await call(client, "delete_interaction", {"user_id": "alice", "interaction_id": turn})
        assert await told.settled() == {STATUS, users("alice"), session("alice", "trip")}
        await publish(client, DEFAULT_USER, "chat")
        assert await told.settled() == {STATUS, RECENT}
        await unsubscribe(client, STATUS)
        await unsubscribe(client, users("alice"))
        await publish(client, "alice", "work")
        assert await told.settled() == set()


async def test_legacy_subscriptions_are_forgotten_when_the_connection_ends(
    settings: Settings,
) -> None:
    store = EmbeddedStore(settings.data_folder)
    shared = SharedBackend(store, settings.user_id)
    server = build_server(settings, shared)
    updates = _updates_of(server)
    async with shared:
        for _ in range(3):
            async with Client(server, mode="legacy") as client:
                await subscribe(client, users("alice"))
                assert updates.subscribed_connections == 1
            assert updates.subscribed_connections == 0
        assert await store.get_interactions(GetRequest(user_id="alice")) == []


async def test_one_legacy_connection_is_told_only_of_its_own_subscriptions(
    settings: Settings,
) -> None:
    server = build_server(settings)
    alice_told, bob_told = Updates(), Updates()
    async with (
        Client(server, mode="legacy", message_handler=alice_told) as alice,
        Client(server, mode="legacy", message_handler=bob_told) as bob,
    ):
        await subscribe(alice, users("alice"))
        await subscribe(bob, users("bob"))
        await publish(alice, "bob", "s")
        assert await alice_told.settled() == set()
        assert await bob_told.settled() == {users("bob")}


async def test_a_pinned_legacy_caller_cannot_subscribe_to_another_users_resources(
    tmp_path: Path,
) -> None:
    pinned = Settings(backend="embedded", data_dir=tmp_path, pin_user=True, user_id="carol")
    server = build_server(pinned)
    async with Client(server, mode="legacy") as client:
        with pytest.raises(MCPError) as refused:
            await subscribe(client, session("dave", "s"))
        assert refused.value.error.code == INVALID_PARAMS
        assert "acts only for user 'carol'" in refused.value.error.message
        assert _updates_of(server).subscribed_connections == 0  # nothing registered
        await subscribe(client, users("carol"))
        assert _updates_of(server).subscribed_connections == 1


def _updates_of(server: MCPServer[Any]) -> ResourceUpdates:
    """The server's ResourceUpdates, found through its middleware."""
    for middleware in server.middleware:
        owner = getattr(middleware, "__self__", None)
        if isinstance(owner, ResourceUpdates):
            return owner
    raise AssertionError("no ResourceUpdates middleware")


# -- the session template -------------------------------------------------------------------


async def test_the_session_template_reads_that_sessions_turns_oldest_first(mcp: Client) -> None:
    start = int(time.time()) - 100
    turns = [{"content": f"trip {n}", "created_at": start + n} for n in range(3)]
    await call(
        mcp, "publish_interaction", {"user_id": "a b", "session_id": "t/1", "interactions": turns}
    )
    await publish(mcp, "a b", "other")
    await publish(mcp, "someone", "t/1")
    document = await read_json(mcp, session("a b", "t/1"))
    assert document["user_id"] == "a b"
    assert document["session_id"] == "t/1"
    assert document["order"] == "oldest first"
    assert document["truncated"] is False
    assert [i["content"] for i in document["interactions"]] == ["trip 0", "trip 1", "trip 2"]
    empty = await read_json(mcp, session("a b", "never"))
    assert (empty["count"], empty["interactions"]) == (0, [])


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("reflexio://users/a/sessions/x%00y", "session_id: an id must not contain control"),
        ("reflexio://users/a/sessions/%20x", "session_id: an id must not start or end with"),
        (session("a", "x" * 300), "session_id: must have at most 256 characters (got 300)"),
        ("reflexio://users/%2E%2E/sessions/x", "user_id: a user id must not contain / or"),
    ],
)
async def test_the_session_template_refuses_bad_ids_in_words(
    mcp: Client, uri: str, expected: str
) -> None:
    with pytest.raises(MCPError) as refused:
        await mcp.read_resource(uri)
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message.startswith(f"invalid input: {expected}"), (
        refused.value.error.message
    )


async def test_a_pinned_caller_reads_only_its_own_sessions(tmp_path: Path) -> None:
    pinned = Settings(backend="embedded", data_dir=tmp_path, pin_user=True, user_id="carol")
    async with Client(build_server(pinned)) as client:
        await publish(client, "carol", "s")
        assert (await read_json(client, session("carol", "s")))["count"] == 2
        with pytest.raises(MCPError, match="acts only for user 'carol'"):
            await client.read_resource(session("dave", "s"))


# -- staying within the budget -----------------------------------------------------------------


async def test_a_large_session_is_cut_to_the_budget_and_says_how_to_get_the_rest(
    tmp_path: Path,
) -> None:
    small = Settings(backend="embedded", data_dir=tmp_path, max_result_chars=5_000)
    async with Client(build_server(small)) as client:
        start = int(time.time()) - 1000
        turns = [{"content": f"{n} " + "word " * 150, "created_at": start + n} for n in range(30)]
        await call(
            client,
            "publish_interaction",
            {"user_id": "u", "session_id": "s", "interactions": turns},
        )
        result = await client.read_resource(session("u", "s"))
        (content,) = result.contents
        assert isinstance(content, TextResourceContents)
        assert len(content.text) <= 5_000
        document = json.loads(content.text)
        assert document["truncated"] is True
        shown = [int(i["content"].split()[0]) for i in document["interactions"]]
        assert shown == list(range(30 - len(shown), 30))  # the newest, oldest first
        more = document["more"]
        assert more["left_out"] == 30 - len(shown)
        assert more["tool"] == "get_interactions"
        assert more["arguments"]["user_id"] == "u"
        assert more["arguments"]["end_time"] == document["interactions"][0]["time"]
        rest = await call(client, "get_interactions", more["arguments"])
        assert rest["count"] > 0


@pytest.mark.parametrize("budget", [2_000, 3_000, 40_000])
async def test_every_document_fits_the_budget_however_large_one_turn_is(
    tmp_path: Path, budget: int
) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path, max_result_chars=budget)
    user = "u" * 200
    tools = [{"tool_name": f"t{n}", "tool_data": {"x": "y" * 3000}} for n in range(50)]
    turn = {
        "content": "c" * 50_000,
        "expert_content": "e" * 50_000,
        "user_action_description": "d" * 9_000,
        "tools_used": tools,
    }
    async with Client(build_server(settings)) as client:
        for _ in range(3):
            await call(
                client,
                "publish_interaction",
                {"user_id": user, "session_id": "s", "interactions": [turn]},
            )
        for uri in [users(user), session(user, "s")]:
            result = await client.read_resource(uri)
            (content,) = result.contents
            assert isinstance(content, TextResourceContents)
            assert len(content.text) <= budget, (uri, len(content.text))
            document = json.loads(content.text)
            # One turn alone holds 100,000+ characters once cut at 2,000 a field.
            assert document["truncated"] is True
            assert document["count"] >= 1
            assert document["more"]["tool"] == "get_interactions"


async def test_recent_resources_say_when_they_are_whole(mcp: Client) -> None:
    await publish(mcp, DEFAULT_USER, "chat")
    document = await read_json(mcp, RECENT)
    assert document["truncated"] is False
    assert "more" not in document


# -- resources/list ------------------------------------------------------------------------


async def test_resources_list_pages_through_the_callers_sessions(mcp: Client) -> None:
    sessions = [f"s{n:03}" for n in range(PAGE_SIZE + 20)]
    for name in sessions:
        await publish(mcp, DEFAULT_USER, name)
    await publish(mcp, "someone-else", "hidden")
    first = await mcp.list_resources()
    uris = [str(r.uri) for r in first.resources]
    assert uris[:2] == [STATUS, RECENT]
    assert len(uris) == PAGE_SIZE
    assert first.next_cursor is not None
    listed = list(uris)
    cursor: str | None = first.next_cursor
    pages = 1
    while cursor is not None:
        page = await mcp.list_resources(cursor=cursor)
        listed += [str(r.uri) for r in page.resources]
        cursor = page.next_cursor
        pages += 1
    assert pages == 2
    assert listed[2:] == [session(DEFAULT_USER, name) for name in reversed(sessions)]
    described = first.resources[2]
    assert described.description is not None
    assert described.description.startswith("2 turn(s) of user 'user-default', last published ")
    document = await read_json(mcp, str(described.uri))
    assert document["count"] == 2


@pytest.mark.parametrize(
    "cursor",
    ["page-2", "", "e30", make_cursor(DEFAULT_USER, -1), make_cursor("someone-else", 50), "\x00"],
)
async def test_resources_list_refuses_a_cursor_it_did_not_give_in_words(
    mcp: Client, cursor: str
) -> None:
    with pytest.raises(MCPError) as refused:
        await mcp.list_resources(cursor=cursor)
    assert refused.value.error.code == INVALID_PARAMS
    assert "not a nextCursor this server's resources/list gave you" in refused.value.error.message


async def test_resources_list_shows_a_pinned_caller_its_own_sessions(tmp_path: Path) -> None:
    pinned = Settings(backend="embedded", data_dir=tmp_path, pin_user=True, user_id="carol")
    async with Client(build_server(pinned)) as client:
        await publish(client, "carol", "mine")
        listed = [str(r.uri) for r in (await client.list_resources()).resources]
    assert listed == [STATUS, RECENT, session("carol", "mine")]


async def test_a_queued_publish_tells_its_subscribers_again_when_it_is_delivered(
    tmp_path: Path,
) -> None:
    """Reflexio down: the publish is queued (only the status changed: the outbox holds it);
    back up: the outbox delivers it in the background, and the user's resources change."""
    down = True

    def reflexio(request: httpx2.Request) -> httpx2.Response:
        if down and request.url.path == "/api/publish_interaction":
            raise httpx2.ConnectError("refused", request=request)
        if request.url.path == "/health":
            return httpx2.Response(200, json={"status": "healthy"})
        return httpx2.Response(200, json={"success": True, "interactions": [], "message": "ok"})

    client = ReflexioApi(URL, max_retries=0, transport=httpx2.MockTransport(reflexio))
    store = ReflexioBackend(client, Outbox(tmp_path, client.url), publish_rate=0)
    settings = Settings(url=URL, data_dir=tmp_path)
    watched = [STATUS, users("u"), session("u", "s"), session("u", "other")]
    async with (
        Client(build_server(settings, store)) as mcp,
        mcp.listen(resource_subscriptions=watched) as sub,
    ):
        published = await call(
            mcp,
            "publish_interaction",
            {"user_id": "u", "session_id": "s", "user_message": "a", "agent_response": "b"},
        )
        assert published["status"] == "queued"
        assert await heard(sub) == {STATUS}
        down = False
        told: set[str] = set()
        with anyio.fail_after(20):
            while told != {STATUS, users("u"), session("u", "s")}:
                event = await sub.__anext__()
                assert isinstance(event, ResourceUpdated)
                told.add(event.uri)


# -- over HTTP, with a tokens file: each token watches only its own user's ------------------


async def test_over_http_each_token_hears_only_of_its_own_users_resources(
    tmp_path: Path,
) -> None:
    alice, bob = "alice", "bob"
    tokens = {alice: secrets.token_urlsafe(24), bob: secrets.token_urlsafe(24)}
    tokens_file = tmp_path / "tokens.json"
    entries = [{"token": token, "user_id": user, "role": "write"} for user, token in tokens.items()]
    tokens_file.write_text(json.dumps({"tokens": entries}))
    tokens_file.chmod(0o600)
    env = {"REFLEXIO_MCP_TOKENS_FILE": str(tokens_file), "REFLEXIO_MCP_NO_CONFIRM": "1"}
    told = Updates()
    with http_bridge(tmp_path, env=env) as bridge:
        async with (
            http_client(bridge.endpoint, token=tokens[alice]) as as_alice,
            http_client(bridge.endpoint, token=tokens[bob]) as as_bob,
            legacy_http_client(bridge.endpoint, tokens[bob], told) as bob_legacy,
        ):
            with pytest.raises(MCPError, match="acts only for user 'alice'"):
                async with as_alice.listen(resource_subscriptions=[users(bob)]):
                    pass
            with pytest.raises(MCPError, match="acts only for user 'bob'"):
                await subscribe(bob_legacy, users(alice))
            await subscribe(bob_legacy, RECENT)
            await subscribe(bob_legacy, users(bob))
            async with as_alice.listen(resource_subscriptions=[RECENT, users(alice)]) as sub:
                await http_call(
                    as_bob, "publish_interaction", {"user_message": "b", "agent_response": "c"}
                )
                assert await heard(sub) == set()  # recent shows alice her own turns only
                assert await told.settled() == {RECENT, users(bob)}
                await http_call(
                    as_alice, "publish_interaction", {"user_message": "a", "agent_response": "b"}
                )
                assert await heard(sub) == {RECENT, users(alice)}
                assert await told.settled() == set()


async def http_call(client: Client, tool: str, arguments: dict[str, Any]) -> None:
    is_error, _, text = await call_over_http(client, tool, arguments)
    assert not is_error, text
