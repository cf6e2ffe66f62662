"""Access tokens over HTTP: each call acts for its token's user, within its token's role.

The real `reflexio-mcp --transport streamable-http` runs with a tokens file in front of the real
Reflexio server, reached through a recording proxy: so a test sees not only what a caller is
told, but also every request the bridge sent on to Reflexio (a refusal must send nothing, and
no client's access token may ever travel on). The last tests run the pinned and read-only
modes in process, as stdio serves them.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import uuid
from collections.abc import Generator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

import anyio
import httpx2
import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from mcp import Client
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, TextContent, TextResourceContents

from reflexio_mcp.app import SharedBackend, build_server
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.durable import ReflexioBackend
from reflexio_mcp.backends.reflexio.outbox import Outbox
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.settings import Settings
from tests.support.mcp_http import (
    INITIALIZE,
    MCP_HEADERS,
    HttpBridge,
    call,
    http_bridge,
    http_client,
)
from tests.support.recording_proxy import Recorded, RecordingProxy
from tests.support.reflexio_server import RunningServer
from tests.support.resource_updates import Updates, heard, legacy_http_client, subscribe

API_KEY = "reflexio-api-key-" + secrets.token_hex(8)
"""The bridge's own key for Reflexio (which, without auth configured, ignores it)."""
READ_TOOLS = {"get_publish_status", "search_interactions", "get_interactions"}
WRITE_TOOLS = {"publish_interaction", "publish_batch", "delete_interaction"}
LEARNINGS_READ, LEARNINGS_WRITE = {"search_learnings"}, {"delete_learning"}
"""Listed only on Reflexio."""
ADMIN_TOOLS = {"get_all_interactions"}

Role = Literal["read", "write", "admin"]


# --- the recording proxy ------------------------------------------------------------------


# --- the bridge with its tokens file ------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    token: str
    user_id: str
    role: Role

    @staticmethod
    def new(user: str, role: Role = "write") -> Caller:
        return Caller(secrets.token_urlsafe(24), f"{user}-{uuid.uuid4().hex[:10]}", role)

    def entry(self) -> dict[str, str]:
        return {"token": self.token, "user_id": self.user_id, "role": self.role}


@dataclass
class Scoped:
    bridge: HttpBridge
    proxy: RecordingProxy
    tokens_file: Path
    alice: Caller
    bob: Caller
    reader: Caller
    admin: Caller
    mallory: Caller
    """Her user id is bob's with its "-" percent-encoded: "bob%2D..."."""
    erin: Caller
    """Her user id has a space, so her resource URI needs percent-encoding."""
    base: list[Caller]
    """What the tokens file holds between tests."""
    callers: list[Caller] = field(default_factory=list[Caller])
    """Every token the file held at some point."""


def write_tokens(path: Path, callers: list[Caller]) -> None:
    """Rewrite the file in place (as an editor without backup would), owner-only."""
    content = json.dumps({"tokens": [caller.entry() for caller in callers]}, indent=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
    path.chmod(0o600)


def replace_tokens(path: Path, callers: list[Caller], mode: int = 0o600) -> None:
    """Write a new file beside it and rename it over the old one (as most tools do)."""
    fresh = path.with_name(path.name + ".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps({"tokens": [caller.entry() for caller in callers]}))
    fresh.chmod(mode)
    os.replace(fresh, path)


@pytest.fixture(scope="module")
def scoped(reflexio: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scoped]:
    workdir = tmp_path_factory.mktemp("http-scope")
    tokens_file = workdir / "tokens.json"
    alice, bob, reader, admin = (
        Caller.new("alice"),
        Caller.new("bob"),
        Caller.new("reader", "read"),
        Caller.new("admin", "admin"),
    )
    mallory = Caller(secrets.token_urlsafe(24), bob.user_id.replace("-", "%2D"), "write")
    erin = Caller(secrets.token_urlsafe(24), f"erin {uuid.uuid4().hex[:10]}", "write")
    base = [alice, bob, reader, admin, mallory, erin]
    write_tokens(tokens_file, base)
    env = {
        "REFLEXIO_API_KEY": API_KEY,
        "REFLEXIO_MCP_TOKENS_FILE": str(tokens_file),
        "REFLEXIO_MCP_PUBLISH_RATE": "0",
    }
    with (
        RecordingProxy(reflexio.url) as proxy,
        http_bridge(workdir, env={**env, "REFLEXIO_URL": proxy.url}) as bridge,
    ):
        yield Scoped(
            bridge, proxy, tokens_file, alice, bob, reader, admin, mallory, erin, base, list(base)
        )


@contextmanager
def nothing_sent_about(proxy: RecordingProxy, *texts: str) -> Generator[list[Recorded]]:
    """Fails unless no request that reaches Reflexio inside the block mentions any of `texts`;
    yields the requests sent (filled when the block ends)."""
    sent: list[Recorded] = []
    mark = proxy.mark()
    yield sent
    sent += proxy.since(mark)
    for text in texts:
        leaked = [f"{r.method} {r.path} {r.body[:200]}" for r in sent if r.mentions(text)]
        assert not leaked, f"requests mentioning {text!r} reached Reflexio: {leaked}"


def refusal_for(acting: str, named: str) -> str:
    return (
        f"invalid input: user_id: this server acts only for user {acting!r} for you, so it "
        f"cannot act for {named!r}; leave user_id out"
    )


async def publish(client: Client, text: str, **extra: Any) -> dict[str, Any]:
    is_error, result, message = await call(
        client,
        "publish_interaction",
        {"user_message": text, "agent_response": f"noted: {text}", **extra},
    )
    assert not is_error, message
    assert result["status"] == "stored", result
    return result


def word() -> str:
    """A word no other test publishes, to search for."""
    return "w" + uuid.uuid4().hex[:16]


def initialize(bridge: HttpBridge, token: str) -> httpx2.Response:
    """One raw initialize request, as any HTTP client would send it."""
    return httpx2.post(
        bridge.endpoint,
        json=INITIALIZE,
        headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def tool_names(endpoint: str, token: str) -> dict[str, dict[str, Any]]:
    async with http_client(endpoint, token=token) as client:
        return {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}


# --- 1. a token cannot act for another user ------------------------------------------------


async def test_a_token_cannot_act_for_another_user_through_any_tool_or_resource(
    scoped: Scoped,
) -> None:
    alice, bob, proxy = scoped.alice, scoped.bob, scoped.proxy
    secret = word()
    async with http_client(scoped.bridge.endpoint, token=bob.token) as as_bob:
        published = await publish(as_bob, f"bob's secret {secret}", request_id=f"rq-{word()}")
        is_error, listed, message = await call(as_bob, "get_interactions", {})
        assert not is_error, message
    bob_turns = [i["interaction_id"] for i in listed["interactions"]]
    assert len(bob_turns) == 2
    bob_turn = listed["interactions"][0]
    assert bob_turn["user_id"] == bob.user_id
    assert bob_turn["request_id"] == published["request_id"]

    attempts: list[tuple[str, dict[str, Any]]] = [
        ("publish_interaction", {"user_message": "hi", "agent_response": "hello"}),
        ("search_interactions", {"query": secret}),
        ("get_interactions", {}),
        ("delete_interaction", {"interaction_id": bob_turn["interaction_id"]}),
        ("get_publish_status", {"request_id": published["request_id"]}),
    ]
    async with http_client(scoped.bridge.endpoint, token=alice.token) as as_alice:
        with nothing_sent_about(proxy, bob.user_id) as sent:
            for tool, arguments in attempts:
                is_error, result, message = await call(
                    as_alice, tool, {**arguments, "user_id": bob.user_id}
                )
                assert is_error, (tool, result)
                assert message == refusal_for(alice.user_id, bob.user_id), tool
            with pytest.raises(MCPError) as refused:
                await as_alice.read_resource(f"reflexio://users/{bob.user_id}/interactions")
            assert refused.value.error.code == INVALID_PARAMS
            assert refused.value.error.message == (
                f"this server acts only for user {alice.user_id!r} for you: read "
                f"reflexio://users/{alice.user_id}/interactions instead"
            )
        assert sent == [], "a refused call still reached Reflexio"

        # Without naming bob, his ids and request ids reach only alice's own data.
        with nothing_sent_about(proxy, bob.user_id) as sent:
            is_error, _, message = await call(
                as_alice, "delete_interaction", {"interaction_id": bob_turn["interaction_id"]}
            )
            assert is_error
            assert alice.user_id in message
            assert str(bob_turn["interaction_id"]) in message
            is_error, status, message = await call(
                as_alice, "get_publish_status", {"request_id": published["request_id"]}
            )
            assert not is_error, message
            assert (status["user_id"], status["status"]) == (alice.user_id, "unknown")
            is_error, found, message = await call(
                as_alice, "search_interactions", {"request_id": published["request_id"]}
            )
            assert not is_error, message
            assert (found["user_id"], found["count"]) == (alice.user_id, 0)
            is_error, found, message = await call(
                as_alice, "search_interactions", {"query": secret}
            )
            assert not is_error, message
            assert (found["user_id"], found["count"]) == (alice.user_id, 0)
        assert [r for r in sent if r.method == "DELETE"] == []
        assert sent, "alice's own calls went to Reflexio"

    async with http_client(scoped.bridge.endpoint, token=bob.token) as as_bob:
        is_error, still, message = await call(as_bob, "get_interactions", {})
    assert not is_error, message
    assert [i["interaction_id"] for i in still["interactions"]] == bob_turns


async def test_a_token_reads_and_changes_only_its_own_learnings(scoped: Scoped) -> None:
    alice, bob, reader, proxy = scoped.alice, scoped.bob, scoped.reader, scoped.proxy
    secret = word()
    async with http_client(scoped.bridge.endpoint, token=bob.token) as as_bob:
        await publish(as_bob, f"bob grows {secret}", wait_for_response=True, force_extraction=True)
        is_error, found, message = await call(as_bob, "search_learnings", {"query": secret})
        assert not is_error, message
    learned = {hit["kind"]: hit for hit in found["learnings"]}
    assert set(learned) == {"profile", "user_playbook"}
    assert {hit["user_id"] for hit in learned.values()} == {bob.user_id}
    profile, playbook = learned["profile"]["id"], learned["user_playbook"]["id"]

    async with http_client(scoped.bridge.endpoint, token=alice.token) as as_alice:
        with nothing_sent_about(proxy, bob.user_id) as sent:
            for tool, arguments in [
                ("search_learnings", {"query": secret}),
                ("search_learnings", {}),
                ("delete_learning", {"learning_id": profile, "confirm": True}),
            ]:
                is_error, result, message = await call(
                    as_alice, tool, {**arguments, "user_id": bob.user_id}
                )
                assert is_error, (tool, result)
                assert message == refusal_for(alice.user_id, bob.user_id), tool
            for uri in (
                f"reflexio://users/{bob.user_id}/profile",
                f"reflexio://users/{bob.user_id}/playbooks",
            ):
                with pytest.raises(MCPError) as refused:
                    await as_alice.read_resource(uri)
                assert refused.value.error.code == INVALID_PARAMS
            with pytest.raises(MCPError) as refused:
                await as_alice.get_prompt("what_you_know_about_me", {"user_id": bob.user_id})
            assert refused.value.error.code == INVALID_PARAMS
        assert sent == [], "a refused call still reached Reflexio"

        # Without naming bob, his learnings' ids reach only alice's own.
        with nothing_sent_about(proxy, bob.user_id) as sent:
            is_error, found, message = await call(as_alice, "search_learnings", {"query": secret})
            assert not is_error, message
            assert (found["user_id"], found["count"]) == (alice.user_id, 0)
            for learning_id in (profile, playbook):
                is_error, _, message = await call(
                    as_alice, "delete_learning", {"learning_id": learning_id, "confirm": True}
                )
                assert is_error
                assert f"of user {alice.user_id!r}: nothing was changed" in message
                is_error, _, message = await call(
                    as_alice,
                    "delete_learning",
                    {"learning_id": learning_id, "correction": "hijacked", "confirm": True},
                )
                assert is_error
                assert "nothing was changed" in message
            own = await as_alice.read_resource(f"reflexio://users/{alice.user_id}/profile")
            own_text = own.contents[0]
            assert isinstance(own_text, TextResourceContents)
            assert json.loads(own_text.text)["count"] == 0
        assert [r for r in sent if r.method in ("DELETE", "PUT")] == []
        assert sent, "alice's own calls went to Reflexio"
        # Agent playbooks are every user's: changing one needs role admin.
        is_error, _, message = await call(
            as_alice, "delete_learning", {"learning_id": "agent_playbook:1", "confirm": True}
        )
        assert is_error
        assert "needs role admin" in message

    async with http_client(scoped.bridge.endpoint, token=reader.token) as as_reader:
        is_error, _, message = await call(
            as_reader, "delete_learning", {"learning_id": profile, "confirm": True}
        )
        assert is_error
        assert message.startswith("delete_learning needs an access token with role write")

    async with http_client(scoped.bridge.endpoint, token=bob.token) as as_bob:
        is_error, still, message = await call(as_bob, "search_learnings", {"query": secret})
    assert not is_error, message
    assert {hit["id"] for hit in still["learnings"]} == {profile, playbook}
    assert all("hijacked" not in hit["content"] for hit in still["learnings"])


async def test_a_request_id_of_another_user_is_not_taken_over(scoped: Scoped) -> None:
    alice, bob = scoped.alice, scoped.bob
    request_id = f"rq-{word()}"
    async with http_client(scoped.bridge.endpoint, token=bob.token) as as_bob:
        await publish(as_bob, "bob owns this request id", request_id=request_id)
    async with http_client(scoped.bridge.endpoint, token=alice.token) as as_alice:
        is_error, result, message = await call(
            as_alice,
            "publish_interaction",
            {"user_message": "mine now?", "agent_response": "no", "request_id": request_id},
        )
        assert is_error, result
        assert request_id in message
        assert bob.user_id not in message  # whose it is stays bob's business
        is_error, found, message = await call(as_alice, "get_interactions", {})
        assert not is_error, message
        assert all(i["request_id"] != request_id for i in found["interactions"])


async def test_a_percent_encoded_resource_uri_cannot_reach_another_user(scoped: Scoped) -> None:
    mallory, bob, proxy = scoped.mallory, scoped.bob, scoped.proxy
    async with http_client(scoped.bridge.endpoint, token=bob.token) as as_bob:
        await publish(as_bob, "bob's diary")
    async with http_client(scoped.bridge.endpoint, token=mallory.token) as as_mallory:
        # The URI names bob once decoded: it is his resource, refused like any other of his.
        with nothing_sent_about(proxy, bob.user_id), pytest.raises(MCPError) as refused:
            await as_mallory.read_resource(f"reflexio://users/{mallory.user_id}/interactions")
        assert refused.value.error.code == INVALID_PARAMS


async def test_a_user_reads_their_own_resource_by_its_percent_encoded_uri(scoped: Scoped) -> None:
    erin = scoped.erin
    async with http_client(scoped.bridge.endpoint, token=erin.token) as as_erin:
        await publish(as_erin, "erin was here")
        read = await as_erin.read_resource(
            f"reflexio://users/{quote(erin.user_id, safe='')}/interactions"
        )
    block = read.contents[0]
    assert isinstance(block, TextResourceContents)
    document = json.loads(block.text)
    assert (document["user_id"], document["count"]) == (erin.user_id, 2)


# --- 2. calls without user_id act for the token's user -------------------------------------


async def test_calls_act_for_the_tokens_user(scoped: Scoped) -> None:
    alice, bob, proxy = scoped.alice, scoped.bob, scoped.proxy
    secret = word()
    async with (
        http_client(scoped.bridge.endpoint, token=alice.token) as as_alice,
        http_client(scoped.bridge.endpoint, token=bob.token) as as_bob,
    ):
        mark = proxy.mark()
        published = await publish(as_alice, f"alice likes {secret}")
        assert published["user_id"] == alice.user_id
        bodies = [r.json() for r in proxy.since(mark) if r.path == "/api/publish_interaction"]
        assert [b["user_id"] for b in bodies] == [alice.user_id]

        is_error, found, message = await call(as_bob, "search_interactions", {"query": secret})
        assert not is_error, message
        assert (found["user_id"], found["count"]) == (bob.user_id, 0)

        is_error, found, message = await call(as_alice, "search_interactions", {"query": secret})
        assert not is_error, message
        assert found["user_id"] == alice.user_id
        assert [(i["user_id"], i["request_id"]) for i in found["interactions"]] == [
            (alice.user_id, published["request_id"])
        ] * 2

        # Naming oneself is the same as naming no one.
        is_error, listed, message = await call(
            as_alice, "get_interactions", {"user_id": alice.user_id, "top_k": 2}
        )
        assert not is_error, message
        assert listed["user_id"] == alice.user_id
        assert {i["request_id"] for i in listed["interactions"]} == {published["request_id"]}

        recent = await as_alice.read_resource("reflexio://interactions/recent")
        own = await as_alice.read_resource(f"reflexio://users/{alice.user_id}/interactions")
    for read in (recent, own):
        block = read.contents[0]
        assert isinstance(block, TextResourceContents)
        document = json.loads(block.text)
        assert document["user_id"] == alice.user_id
        assert {i["user_id"] for i in document["interactions"]} == {alice.user_id}


# --- 3. no user_id in any schema -----------------------------------------------------------


async def test_no_tool_takes_a_user_id_with_a_tokens_file(scoped: Scoped) -> None:
    for caller in (scoped.alice, scoped.reader, scoped.admin):
        schemas = await tool_names(scoped.bridge.endpoint, caller.token)
        assert schemas
        with_user = [
            name for name, schema in schemas.items() if "user_id" in schema.get("properties", {})
        ]
        assert with_user == [], caller.role
        assert all("user_id" not in schema.get("required", []) for schema in schemas.values())


# --- 4. roles -----------------------------------------------------------------------------


async def test_each_role_lists_and_calls_only_its_tools(scoped: Scoped) -> None:
    endpoint, proxy = scoped.bridge.endpoint, scoped.proxy
    reads, writes = READ_TOOLS | LEARNINGS_READ, WRITE_TOOLS | LEARNINGS_WRITE
    assert set(await tool_names(endpoint, scoped.reader.token)) == reads
    assert set(await tool_names(endpoint, scoped.alice.token)) == reads | writes
    assert set(await tool_names(endpoint, scoped.admin.token)) == reads | writes | ADMIN_TOOLS

    async with http_client(endpoint, token=scoped.reader.token) as as_reader:
        with nothing_sent_about(proxy, scoped.reader.user_id) as sent:
            for tool, arguments, needed in [
                ("publish_interaction", {"user_message": "a", "agent_response": "b"}, "write"),
                ("delete_interaction", {"interaction_id": 1}, "write"),
                ("get_all_interactions", {}, "admin"),
            ]:
                is_error, result, message = await call(as_reader, tool, arguments)
                assert is_error, (tool, result)
                assert message == (
                    f"{tool} needs an access token with role {needed}; this one has role read. "
                    f"Ask whoever runs the server for a token with role {needed}."
                )
        assert sent == []
        is_error, listed, message = await call(as_reader, "get_interactions", {})
        assert not is_error, message
        assert (listed["user_id"], listed["count"]) == (scoped.reader.user_id, 0)

    async with http_client(endpoint, token=scoped.alice.token) as as_alice:
        mark = proxy.mark()
        is_error, _, message = await call(as_alice, "get_all_interactions", {})
        assert is_error
        assert message == (
            "get_all_interactions needs an access token with role admin; this one has role "
            "write. Ask whoever runs the server for a token with role admin."
        )
        assert proxy.since(mark) == []
        secret = word()
        published = await publish(as_alice, f"seen by the admin {secret}")

    async with http_client(endpoint, token=scoped.admin.token) as as_admin:
        is_error, everything, message = await call(as_admin, "get_all_interactions", {"top_k": 50})
    assert not is_error, message
    assert everything["user_id"] is None
    mine = [i for i in everything["interactions"] if i["request_id"] == published["request_id"]]
    assert [i["user_id"] for i in mine] == [scoped.alice.user_id] * 2


# --- 5. the tokens file is read again when it changes --------------------------------------


async def test_removing_a_token_revokes_it_and_adding_one_admits_it(scoped: Scoped) -> None:
    endpoint, path, alice = scoped.bridge.endpoint, scoped.tokens_file, scoped.alice
    carol, dave = Caller.new("carol"), Caller.new("dave")
    scoped.callers += [carol, dave]
    try:
        write_tokens(path, [*scoped.base, carol])
        opened = initialize(scoped.bridge, carol.token)
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        async with (
            http_client(endpoint, token=carol.token) as as_carol,
            http_client(endpoint, token=alice.token) as as_alice,
        ):
            is_error, listed, message = await call(as_carol, "get_interactions", {})
            assert not is_error, message
            assert listed["user_id"] == carol.user_id

            write_tokens(path, [*scoped.base, dave])  # carol out, dave in: no restart
            assert path.stat().st_mode & 0o777 == 0o600

            refused = initialize(scoped.bridge, carol.token)
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
            # Sessions opened with it are refused too: every request is checked.
            in_session = httpx2.post(
                endpoint,
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                headers={
                    **MCP_HEADERS,
                    "Authorization": f"Bearer {carol.token}",
                    "Mcp-Session-Id": session,
                },
                timeout=30,
            )
            assert in_session.status_code == 401
            with pytest.raises(MCPError):
                await call(as_carol, "get_interactions", {})

            is_error, listed, message = await call(as_alice, "get_interactions", {})
            assert not is_error, message
            assert listed["user_id"] == alice.user_id

        assert initialize(scoped.bridge, dave.token).status_code == 200
        async with http_client(endpoint, token=dave.token) as as_dave:
            published = await publish(as_dave, "dave is in")
        assert published["user_id"] == dave.user_id
    finally:
        write_tokens(path, scoped.base)
    assert initialize(scoped.bridge, dave.token).status_code == 401
    assert initialize(scoped.bridge, alice.token).status_code == 200


async def test_a_tokens_file_turned_invalid_refuses_every_token_until_fixed(
    scoped: Scoped,
) -> None:
    path, alice = scoped.tokens_file, scoped.alice
    try:
        path.write_text('{"tokens": [')  # half written: the last good tokens stay...
        assert initialize(scoped.bridge, alice.token).status_code == 200
        os.utime(path, (1, 1))  # ...until it is seen left so: then the server fails closed
        assert initialize(scoped.bridge, alice.token).status_code == 401
        replace_tokens(path, scoped.base, mode=0o644)  # valid, but others can read it
        assert initialize(scoped.bridge, alice.token).status_code == 401
        replace_tokens(path, scoped.base)
        assert initialize(scoped.bridge, alice.token).status_code == 200
    finally:
        replace_tokens(path, scoped.base)


async def test_chmod_600_on_a_tokens_file_others_could_read_admits_its_tokens(
    scoped: Scoped,
) -> None:
    path, alice = scoped.tokens_file, scoped.alice
    try:
        replace_tokens(path, scoped.base, mode=0o644)
        assert initialize(scoped.bridge, alice.token).status_code == 401
        path.chmod(0o600)  # what the server's log says to do
        assert initialize(scoped.bridge, alice.token).status_code == 200
    finally:
        replace_tokens(path, scoped.base)
    assert initialize(scoped.bridge, alice.token).status_code == 200


# --- 6. no token passthrough ---------------------------------------------------------------


async def test_reflexio_sees_the_api_key_and_never_an_access_token(scoped: Scoped) -> None:
    """Every request made to Reflexio so far in this module, and those of a few more calls."""
    async with http_client(scoped.bridge.endpoint, token=scoped.alice.token) as as_alice:
        published = await publish(as_alice, "passthrough check")
        is_error, found, message = await call(
            as_alice, "search_interactions", {"request_id": published["request_id"]}
        )
        assert not is_error, message
        is_error, _, message = await call(
            as_alice,
            "delete_interaction",
            {"interaction_id": found["interactions"][0]["interaction_id"], "confirm": True},
        )
        assert not is_error, message
    async with http_client(scoped.bridge.endpoint, token=scoped.admin.token) as as_admin:
        is_error, _, message = await call(as_admin, "get_all_interactions", {"top_k": 1})
        assert not is_error, message
    records = scoped.proxy.since(0)
    paths = {r.path.split("?")[0] for r in records}
    assert paths >= {
        "/health", "/api/publish_interaction", "/api/search_interactions",
        "/api/delete_interaction", "/api/get_all_interactions",
    }  # fmt: skip
    assert {r.headers.get("authorization") for r in records} == {f"Bearer {API_KEY}"}
    log = scoped.bridge.log_text()
    for caller in scoped.callers:
        assert [r.path for r in records if r.mentions(caller.token)] == [], caller.user_id
        assert caller.token not in log, caller.user_id
    assert API_KEY not in log


# --- 7. stdio: --pin-user and --read-only --------------------------------------------------


async def test_pin_user_drops_user_id_and_refuses_other_users(tmp_path: Path) -> None:
    pinned = "pinned-" + uuid.uuid4().hex[:8]
    settings = Settings(backend="embedded", data_dir=tmp_path, user_id=pinned, pin_user=True)
    async with Client(build_server(settings)) as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == READ_TOOLS | WRITE_TOOLS
        assert [t.name for t in tools if "user_id" in t.input_schema.get("properties", {})] == []

        for tool, arguments in [
            ("publish_interaction", {"user_message": "a", "agent_response": "b"}),
            ("get_interactions", {}),
            ("search_interactions", {"query": "a"}),
            ("delete_interaction", {"interaction_id": 1}),
            ("get_publish_status", {"request_id": "r1"}),
        ]:
            result = await client.call_tool(tool, {**arguments, "user_id": "someone-else"})
            assert result.is_error, tool
            assert text_of(result.content[0]) == refusal_for(pinned, "someone-else")
        with pytest.raises(MCPError) as refused:
            await client.read_resource("reflexio://users/someone-else/interactions")
        assert refused.value.error.code == INVALID_PARAMS
        assert pinned in refused.value.error.message

        published = await client.call_tool(
            "publish_interaction", {"user_message": "pinned hello", "agent_response": "hi"}
        )
        assert not published.is_error, text_of(published.content[0])
        assert cast(dict[str, Any], published.structured_content)["user_id"] == pinned
        listed = await client.call_tool("get_interactions", {"user_id": pinned})
        assert not listed.is_error, text_of(listed.content[0])
        found = cast(dict[str, Any], listed.structured_content)
        assert (found["user_id"], found["count"]) == (pinned, 2)


async def test_read_only_lists_no_write_tool_and_refuses_writes(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path, read_only=True)
    async with Client(build_server(settings)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
        for tool, arguments in [
            ("publish_interaction", {"user_message": "a", "agent_response": "b"}),
            ("delete_interaction", {"interaction_id": 1}),
        ]:
            result = await client.call_tool(tool, arguments)
            assert result.is_error, tool
            message = text_of(result.content[0])
            assert message.startswith(f"{tool} is not enabled on this server:"), message
            assert "--read-only" in message
        listed = await client.call_tool("get_interactions", {})
        assert not listed.is_error, text_of(listed.content[0])
        assert cast(dict[str, Any], listed.structured_content)["count"] == 0


def text_of(block: object) -> str:
    assert isinstance(block, TextContent)
    return block.text


# --- 8. status: each token sees its own counts, and hears of its own changes ---------------

STATUS = "reflexio://status"


@dataclass(frozen=True)
class Tenants:
    bridge: HttpBridge
    alice: Caller
    bob: Caller
    admin: Caller


@contextmanager
def tenants(workdir: Path, env: dict[str, str]) -> Generator[Tenants]:
    """A bridge with a tokens file of alice and bob (write) and an admin."""
    alice, bob, admin = Caller.new("alice"), Caller.new("bob"), Caller.new("admin", "admin")
    tokens_file = workdir / "tokens.json"
    write_tokens(tokens_file, [alice, bob, admin])
    with http_bridge(workdir, env={"REFLEXIO_MCP_TOKENS_FILE": str(tokens_file), **env}) as bridge:
        yield Tenants(bridge, alice, bob, admin)


@pytest.fixture(scope="module")
def embedded_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    with tenants(tmp_path_factory.mktemp("tenants-embedded"), {}) as running:
        yield running


@pytest.fixture(scope="module")
def queued_tenants(
    reflexio: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tenants]:
    """The real Reflexio behind a pace so slow (one publish in 1000 minutes) that every
    publish waits in the outbox for the length of the tests."""
    env = {"REFLEXIO_URL": reflexio.url, "REFLEXIO_MCP_PUBLISH_RATE": "0.001"}
    with tenants(tmp_path_factory.mktemp("tenants-queued"), env) as running:
        yield running


async def status_of(endpoint: str, caller: Caller) -> dict[str, Any]:
    async with http_client(endpoint, token=caller.token) as client:
        read = await client.read_resource(STATUS)
    block = read.contents[0]
    assert isinstance(block, TextResourceContents)
    assert caller.user_id in block.text
    return json.loads(block.text)


async def publish_as(endpoint: str, caller: Caller, turns: int = 1) -> str:
    """One publish of `turns` turns; its status (stored or queued)."""
    interactions = [{"role": "user", "content": f"turn {n} {word()}"} for n in range(turns)]
    async with http_client(endpoint, token=caller.token) as client:
        is_error, result, message = await call(
            client, "publish_interaction", {"interactions": interactions}
        )
    assert not is_error, message
    return str(result["status"])


def mentions_none_of(document: dict[str, Any], *callers: Caller) -> None:
    text = json.dumps(document)
    for caller in callers:
        assert caller.user_id not in text, caller.user_id


async def test_a_tokens_status_counts_only_its_own_interactions_on_the_embedded_store(
    embedded_tenants: Tenants,
) -> None:
    endpoint, alice, bob, admin = (
        embedded_tenants.bridge.endpoint,
        embedded_tenants.alice,
        embedded_tenants.bob,
        embedded_tenants.admin,
    )
    assert await publish_as(endpoint, bob, turns=3) == "stored"
    assert await publish_as(endpoint, bob, turns=2) == "stored"
    assert await publish_as(endpoint, alice, turns=1) == "stored"

    mine = await status_of(endpoint, alice)
    assert (mine["user_id"], mine["user_interactions"]) == (alice.user_id, 1)
    assert (mine["interactions"], mine["users"]) == (None, None)  # bob's are not counted
    mentions_none_of(mine, bob, admin)
    his = await status_of(endpoint, bob)
    assert (his["user_interactions"], his["interactions"], his["users"]) == (5, None, None)
    everyone = await status_of(endpoint, admin)  # an admin token sees the whole store
    assert (everyone["user_interactions"], everyone["interactions"], everyone["users"]) == (
        0,
        6,
        2,
    )


async def test_a_tokens_status_counts_only_its_own_waiting_publishes_on_reflexio(
    queued_tenants: Tenants,
) -> None:
    endpoint, alice, bob, admin = (
        queued_tenants.bridge.endpoint,
        queued_tenants.alice,
        queued_tenants.bob,
        queued_tenants.admin,
    )
    before = await status_of(endpoint, alice)
    assert before["outbox"]["waiting"] == 0
    for _ in range(3):
        assert await publish_as(endpoint, bob) == "queued"

    mine = await status_of(endpoint, alice)
    assert mine["backend"] == "reflexio"
    assert mine["reachable"] is True
    outbox = mine["outbox"]
    assert outbox["available"] is True
    assert (outbox["waiting"], outbox["waiting_bytes"], outbox["oldest_age_seconds"]) == (
        0,
        0,
        None,
    )
    assert (outbox["failed"], outbox["waiting_for_other_urls"]) == (0, {})
    mentions_none_of(mine, bob, admin)

    assert await publish_as(endpoint, alice) == "queued"
    mine = await status_of(endpoint, alice)
    assert mine["outbox"]["waiting"] == 1
    assert mine["outbox"]["waiting_bytes"] > 0
    his = await status_of(endpoint, bob)
    assert his["outbox"]["waiting"] == 3
    assert his["outbox"]["waiting_bytes"] > mine["outbox"]["waiting_bytes"]
    everyone = await status_of(endpoint, admin)
    assert everyone["outbox"]["waiting"] == 4
    assert everyone["outbox"]["waiting_bytes"] == (
        mine["outbox"]["waiting_bytes"] + his["outbox"]["waiting_bytes"]
    )


async def assert_status_watchers_hear_only_their_own(
    endpoint: str, alice: Caller, bob: Caller, expected: str
) -> None:
    """alice watches reflexio://status on both eras: bob's publish tells her nothing, her
    own tells her."""
    told = Updates()
    async with (
        http_client(endpoint, token=alice.token) as as_alice,
        legacy_http_client(endpoint, alice.token, told) as alice_legacy,
    ):
        await subscribe(alice_legacy, STATUS)
        async with as_alice.listen(resource_subscriptions=[STATUS]) as listening:
            assert await publish_as(endpoint, bob) == expected
            assert await heard(listening) == set()
            assert await told.settled() == set()
            assert await publish_as(endpoint, alice) == expected
            assert await heard(listening) == {STATUS}
            assert await told.settled() == {STATUS}


async def test_a_tokens_status_watchers_hear_only_of_its_own_publishes_on_reflexio(
    scoped: Scoped,
) -> None:
    await assert_status_watchers_hear_only_their_own(
        scoped.bridge.endpoint, scoped.alice, scoped.bob, "stored"
    )


async def test_a_tokens_status_watchers_hear_only_of_its_own_queued_publishes(
    queued_tenants: Tenants,
) -> None:
    await assert_status_watchers_hear_only_their_own(
        queued_tenants.bridge.endpoint, queued_tenants.alice, queued_tenants.bob, "queued"
    )


async def test_a_tokens_status_watchers_hear_only_of_its_own_publishes_on_the_embedded_store(
    embedded_tenants: Tenants,
) -> None:
    await assert_status_watchers_hear_only_their_own(
        embedded_tenants.bridge.endpoint, embedded_tenants.alice, embedded_tenants.bob, "stored"
    )


async def test_an_admin_tokens_status_watcher_hears_every_users_publishes(
    embedded_tenants: Tenants,
) -> None:
    endpoint, admin = embedded_tenants.bridge.endpoint, embedded_tenants.admin
    async with (
        http_client(endpoint, token=admin.token) as as_admin,
        as_admin.listen(resource_subscriptions=[STATUS]) as listening,
    ):
        assert await publish_as(endpoint, embedded_tenants.bob) == "stored"
        assert await heard(listening) == {STATUS}


USERS = ("ann", "ben", "cat")
FUZZ_EXAMPLES = int(os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES", "25"))
publishes = st.lists(
    st.tuples(st.sampled_from(USERS), st.integers(min_value=1, max_value=3)), max_size=8
)


def per_user_servers(store: Backend, workdir: Path) -> dict[str | None, MCPServer[Any]]:
    """One server per user pinned to it (as a token pins its caller) and one for any user,
    all on one store."""
    shared = SharedBackend(store, "nobody")
    servers: dict[str | None, MCPServer[Any]] = {
        user: build_server(
            Settings(backend="embedded", data_dir=workdir, user_id=user, pin_user=True), shared
        )
        for user in USERS
    }
    servers[None] = build_server(Settings(backend="embedded", data_dir=workdir), shared)
    return servers


async def fuzzed_statuses(
    store: Backend, workdir: Path, sequence: list[tuple[str, int]]
) -> dict[str | None, dict[str, Any]]:
    """Each user publishes its turns through its own server; every status after."""
    statuses: dict[str | None, dict[str, Any]] = {}
    async with AsyncExitStack() as stack:
        clients = {
            user: await stack.enter_async_context(Client(server))
            for user, server in per_user_servers(store, workdir).items()
        }
        for user, turns in sequence:
            interactions = [{"role": "user", "content": f"t{n}"} for n in range(turns)]
            result = await clients[user].call_tool(
                "publish_interaction", {"interactions": interactions}
            )
            assert not result.is_error, result.content
        for user, client in clients.items():
            read = await client.read_resource(STATUS)
            block = read.contents[0]
            assert isinstance(block, TextResourceContents)
            statuses[user] = json.loads(block.text)
    return statuses


@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(sequence=publishes)
def test_each_callers_embedded_status_counts_what_its_own_publishes_stored(
    sequence: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder))
        statuses = anyio.run(fuzzed_statuses, store, Path(folder), sequence)
    for user in USERS:
        status = statuses[user]
        assert status["user_id"] == user
        assert status["user_interactions"] == sum(n for u, n in sequence if u == user)
        assert (status["interactions"], status["users"]) == (None, None)
    anyone = statuses[None]
    assert anyone["interactions"] == sum(n for _, n in sequence)
    assert anyone["users"] == len({u for u, _ in sequence})


@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=publishes)
def test_each_callers_reflexio_status_counts_what_its_own_publishes_left_waiting(
    reflexio: RunningServer, sequence: list[tuple[str, int]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        client = ReflexioApi(reflexio.url)
        store = ReflexioBackend(client, Outbox(Path(folder), client.url), publish_rate=0.001)
        statuses = anyio.run(fuzzed_statuses, store, Path(folder), sequence)
    for user in USERS:
        outbox = statuses[user]["outbox"]
        assert outbox["waiting"] == sum(1 for u, _ in sequence if u == user)
        assert (outbox["waiting_bytes"] > 0) == (outbox["waiting"] > 0)
        assert (outbox["oldest_age_seconds"] is None) == (outbox["waiting"] == 0)
        assert outbox["failed"] == 0
    anyone = statuses[None]["outbox"]
    assert anyone["waiting"] == len(sequence)
    assert anyone["waiting_bytes"] == sum(statuses[u]["outbox"]["waiting_bytes"] for u in USERS)
