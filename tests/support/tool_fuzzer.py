"""A server on a throwaway embedded store, driven with fuzzed tool calls, each answer checked:
in time, in the project's own words, acting for the user named, and what a publish stored
reads back."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent, TextResourceContents

from reflexio_mcp.app import build_server
from reflexio_mcp.core.limits import MAX_RESULTS
from reflexio_mcp.settings import Settings
from tests.support.tool_arguments import (
    CALL_SECONDS,
    CRASHES,
    DEFAULT_USER,
    LEAKS,
    MAX_ERROR_CHARS,
    TIMESTAMP,
    VALID_PUBLISH,
    Args,
    StoredId,
)


@dataclass
class Fuzzer:
    """One running server, its client, and what the calls so far have stored."""

    portal: BlockingPortal
    client: Client
    known: dict[int, str] = field(default_factory=dict[int, str])
    """Interaction id -> owner, of every interaction read back and not deleted since."""
    users: set[str] = field(default_factory=set[str])
    """Every user a publish succeeded for."""

    def call(self, tool: str, arguments: Args) -> dict[str, Any] | None:
        """Call `tool`, check the answer, and return its structured content (None on error)."""

        async def run() -> CallToolResult:
            with anyio.fail_after(CALL_SECONDS):
                return await self.client.call_tool(tool, arguments)

        try:
            result = self.portal.call(run)
        except TimeoutError:
            raise AssertionError(f"{tool} did not answer within {CALL_SECONDS} s") from None
        except MCPError as err:
            raise AssertionError(
                f"{tool} answered a protocol error {err.error.code}: {err.error.message}"
            ) from None
        text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
        if result.is_error:
            assert text, f"{tool} failed without saying why"
            assert not text.startswith("Error executing tool"), text
            for leak in LEAKS:
                assert leak not in text, text
            for crash in CRASHES:
                assert crash not in text, text
            assert len(text) <= MAX_ERROR_CHARS, f"{len(text)}-character error: {text[:500]}"
            return None
        assert result.structured_content is not None, f"{tool} succeeded without structure"
        content = result.structured_content
        owner = arguments.get("user_id") or DEFAULT_USER
        if tool == "publish_interaction":
            assert content["user_id"] == owner, f"published for {content['user_id']!r}"
            given_id = arguments.get("request_id")  # "" (or none) asks for a fresh one
            assert not given_id or content["request_id"] == given_id, content["request_id"]
        elif tool == "delete_interaction":
            assert content["deleted"]["user_id"] == owner, f"deleted {content['deleted']!r}"
        elif tool == "get_publish_status":
            assert (content["user_id"], content["request_id"]) == (owner, arguments["request_id"])
            assert content["status"] in ("delivered", "unknown"), content  # nothing queues here
        else:
            listed(tool, arguments, content)
            for interaction in content["interactions"]:
                self.known[interaction["interaction_id"]] = interaction["user_id"]
        return content

    def read(self, uri: str) -> dict[str, Any] | None:
        """Read a resource: its JSON, or None when it refused the URI as invalid params."""

        async def run() -> str:
            with anyio.fail_after(CALL_SECONDS):
                result = await self.client.read_resource(uri, cache_mode="bypass")
            (content,) = result.contents
            assert isinstance(content, TextResourceContents)
            return content.text

        try:
            return json.loads(self.portal.call(run))
        except TimeoutError:
            raise AssertionError(f"{uri} was not read within {CALL_SECONDS} s") from None
        except MCPError as err:
            refused = err.error
        assert refused.code == INVALID_PARAMS, (refused.code, refused.message)
        for leak in LEAKS:
            assert leak not in refused.message, refused.message
        return None

    def publish(self, arguments: Args) -> tuple[str, str, int] | None:
        """Publish; (user id, request id, turns stored) when it succeeded."""
        published = self.call("publish_interaction", arguments)
        if published is None:
            return None
        self.users.add(published["user_id"])
        return published["user_id"], published["request_id"], published["stored"]

    def reads_back(self, publishes: list[tuple[str, str, int]], *, exact: bool) -> None:
        """What these publishes stored reads back; `exact`: no delete ran since, so all of it."""
        for user_id, request_id, stored in publishes:
            found = self.call(
                "search_interactions",
                {"user_id": user_id, "request_id": request_id, "top_k": MAX_RESULTS},
            )
            assert found is not None, f"turns of {request_id!r} of {user_id!r} do not read back"
            if exact and stored:
                assert found["count"] == stored, (found["count"], stored)
        for user_id in {user_id for user_id, _, _ in publishes}:
            listed = self.call("get_interactions", {"user_id": user_id})
            assert listed is not None, f"the interactions of {user_id!r} do not read back"
            self.resource_reads_back(user_id)

    def resource_reads_back(self, user_id: str) -> None:
        document = self.read(f"reflexio://users/{quote(user_id, safe='')}/interactions")
        assert document is not None, f"the resource of {user_id!r} refuses it"
        assert document["user_id"] == user_id

    def everything_reads_back(self) -> None:
        """Every user's history, and every user's together, read back whole at the end."""
        everything = self.call("get_all_interactions", {"top_k": MAX_RESULTS})
        assert everything is not None, "get_all_interactions fails on what is stored"
        for user_id in sorted(self.users):
            arguments = {"user_id": user_id, "top_k": MAX_RESULTS}
            listed = self.call("get_interactions", arguments)
            assert listed is not None, f"the interactions of {user_id!r} do not read back"
            newest = self.call("search_interactions", arguments)
            assert newest is not None, f"a search of {user_id!r} without query fails"
            self.resource_reads_back(user_id)
        assert self.read("reflexio://status") is not None
        assert self.read("reflexio://interactions/recent") is not None

    def resolved(self, arguments: Args) -> Args:
        """`arguments` with a StoredId replaced by the id of an interaction stored now."""
        stored = arguments.get("interaction_id")
        if not isinstance(stored, StoredId):
            return arguments
        if not self.known:
            return {"interaction_id": stored.pick + 1}
        known = sorted(self.known.items())
        interaction_id, owner = known[stored.pick % len(known)]
        resolved: Args = {"interaction_id": interaction_id}
        if not stored.by_owner:
            resolved["user_id"] = "bob" if owner == "alice" else "alice"
        elif stored.name_owner or owner != DEFAULT_USER:
            resolved["user_id"] = owner
        note(f"delete_interaction({resolved!r})")
        return resolved

    def example(self, data: st.DataObject, tool: str, calls: SearchStrategy[Args]) -> None:
        """Maybe a valid publish, then one to three calls of `tool`, then the read-back."""
        publishes: list[tuple[str, str, int]] = []
        if tool != "publish_interaction":
            for seed in data.draw(st.lists(VALID_PUBLISH, max_size=1), label="seed"):
                if published := self.publish(seed):
                    publishes.append(published)
        deleted = False
        for _ in range(data.draw(st.integers(1, 3), label="calls")):
            args = self.resolved(data.draw(calls, label=tool))
            if tool == "publish_interaction":
                if published := self.publish(args):
                    publishes.append(published)
            elif (answer := self.call(tool, args)) is not None and tool == "delete_interaction":
                self.known.pop(answer["deleted"]["interaction_id"], None)
                deleted = True
        self.reads_back(publishes, exact=not deleted)


def listed(tool: str, arguments: Args, content: dict[str, Any]) -> None:
    """A successful listing holds what was asked for: the user's, in the window, no more than
    asked, newest first unless a query ranks them."""
    interactions: list[dict[str, Any]] = content["interactions"]
    assert content["count"] == len(interactions), content["count"]
    if tool == "get_all_interactions":
        limit, query = int(arguments.get("top_k", 100)), None
    elif tool == "get_interactions":
        limit, query = int(arguments.get("top_k", 30)), None
    else:
        counts = [int(arguments[k]) for k in ("top_k", "most_recent_k") if arguments.get(k)]
        limit, query = min(counts, default=10), (arguments.get("query") or "").strip() or None
    assert len(interactions) <= limit, (len(interactions), limit)
    if query is None or arguments.get("most_recent_k"):
        order = [(i["created_at"], i["interaction_id"]) for i in interactions]
        assert order == sorted(order, reverse=True), f"not newest first: {order}"
    if tool == "get_all_interactions":
        return
    owner = arguments.get("user_id") or DEFAULT_USER
    start, end = (
        None if as_sent(arguments.get(name)) is None else TIMESTAMP.validate_python(arguments[name])
        for name in ("start_time", "end_time")
    )
    for interaction in interactions:
        assert interaction["user_id"] == owner, (interaction["user_id"], owner)
        created = interaction["created_at"]
        assert start is None or created >= start.timestamp(), f"{created} before {start}"
        assert end is None or created <= end.timestamp(), f"{created} after {end}"


def as_sent(value: Any) -> Any:
    """The value as the SDK hands it on: text that is JSON null means null (its pre-parse)."""
    return None if value == "null" else value


@contextmanager
def fuzzer() -> Generator[Fuzzer]:
    """A server on a fresh embedded store, served from a portal's event loop."""
    with tempfile.TemporaryDirectory() as tmp, start_blocking_portal() as portal:
        settings = Settings(backend="embedded", data_dir=Path(tmp), allow_admin=True)
        with portal.wrap_async_context_manager(Client(build_server(settings))) as client:
            yield Fuzzer(portal, client)
