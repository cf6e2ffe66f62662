"""The MCP surface end to end: a real reflexio-mcp process in front of the real Reflexio, over
stdio and over Streamable HTTP, driven by the SDK Client with its callbacks, on both protocol
eras. One conversation exercises it all: a resource subscription that hears the publish and
the delete, a publish whose secret is redacted, a batch with one bad item, completions, a
paged listing, the delete confirmation asked through elicitation, and MCP log messages."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import (
    ElicitRequestParams,
    ElicitResult,
    LoggingMessageNotificationParams,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
    TextResourceContents,
)

from tests.support.launch import server_command
from tests.support.mcp_http import call, http_bridge, http_client
from tests.support.reflexio_server import RunningServer

Era = Literal["auto", "legacy"]
AWS_KEY = "AKIA" + "QYLPMN5HJUWX3ZTB"
WAIT = 20


@dataclass
class Callbacks:
    """What the client was told: resource updates, questions it answered, log messages."""

    updated: list[str] = field(default_factory=list[str])
    changed: anyio.Event = field(default_factory=anyio.Event)
    questions: list[str] = field(default_factory=list[str])
    logs: list[LoggingMessageNotificationParams] = field(
        default_factory=list[LoggingMessageNotificationParams]
    )

    async def elicit(self, _: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        return ElicitResult(action="accept", content={"delete": True})

    async def log(self, params: LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def message(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.update(str(message.params.uri))

    def update(self, uri: str) -> None:
        self.updated.append(uri)
        self.changed.set()

    def options(self) -> dict[str, Any]:
        return {
            "elicitation_callback": self.elicit,
            "logging_callback": self.log,
            "message_handler": self.message,
            "log_level": "info",
        }

    async def heard(self, uri: str) -> None:
        with anyio.fail_after(WAIT):
            while uri not in self.updated:
                await self.changed.wait()
                self.changed = anyio.Event()
        self.updated.clear()


Connect = Callable[[Callbacks, Era], AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["stdio", "streamable-http"])
def connect(request: pytest.FixtureRequest, reflexio: RunningServer, tmp_path: Path) -> Connect:
    settings = {"REFLEXIO_URL": reflexio.url, "REFLEXIO_MCP_DATA_DIR": str(tmp_path)}
    if request.param == "stdio":

        @asynccontextmanager
        async def over_stdio(callbacks: Callbacks, era: Era) -> AsyncGenerator[Client]:
            command, args = server_command()
            parameters = StdioServerParameters(command=command, args=args, env=settings)
            async with Client(parameters, mode=era, **callbacks.options()) as client:
                yield client

        return over_stdio

    bridge = request.getfixturevalue("http_bridge_process")

    @asynccontextmanager
    async def over_http(callbacks: Callbacks, era: Era) -> AsyncGenerator[Client]:
        async with http_client(bridge.endpoint, mode=era, **callbacks.options()) as client:
            yield client

    return over_http


@pytest.fixture
def http_bridge_process(reflexio: RunningServer, tmp_path: Path) -> Any:
    with http_bridge(tmp_path / "bridge", env={"REFLEXIO_URL": reflexio.url}) as bridge:
        yield bridge


@asynccontextmanager
async def watching(
    client: Client, callbacks: Callbacks, era: Era, uri: str
) -> AsyncGenerator[None]:
    """Subscribe to `uri` (and to log messages) the way the era does; updates land in
    `callbacks.updated`."""
    if era == "legacy":
        with warnings.catch_warnings():  # the 2025 verbs, deprecated by the 2026 protocol
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.set_logging_level("info")  # pyright: ignore[reportDeprecated]
            await client.subscribe_resource(uri)  # pyright: ignore[reportDeprecated]
        yield
        return
    async with (
        client.listen(resource_subscriptions=[uri]) as subscription,
        anyio.create_task_group() as events,
    ):

        async def collect() -> None:
            async for event in subscription:
                if isinstance(event, ResourceUpdated):
                    callbacks.update(event.uri)

        events.start_soon(collect)
        yield
        events.cancel_scope.cancel()


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_the_whole_surface(connect: Connect, era: Era, user_id: str) -> None:
    callbacks = Callbacks()
    uri = f"reflexio://users/{user_id}/interactions"
    async with connect(callbacks, era) as client, watching(client, callbacks, era, uri):
        failed, published, text = await call(
            client,
            "publish_interaction",
            {
                "user_id": user_id,
                "session_id": "e2e-session",
                "user_message": f"deploy with AWS_ACCESS_KEY_ID={AWS_KEY} please",
                "agent_response": "Deployed.",
            },
        )
        assert not failed, text
        assert published["redacted"] == {"aws-access-key": 1}
        await callbacks.heard(uri)

        session = await client.read_resource(f"reflexio://users/{user_id}/sessions/e2e-session")
        (content,) = session.contents
        assert isinstance(content, TextResourceContents)
        assert AWS_KEY not in content.text
        assert "[REDACTED:aws-access-key]" in content.text

        failed, batch, text = await call(
            client,
            "publish_batch",
            {
                "publishes": [
                    {"user_id": user_id, "user_message": "batch one", "agent_response": "ok"},
                    {"user_id": user_id, "interactions": [{"content": "", "oops": 1}]},
                ]
            },
        )
        assert not failed, text
        assert [item["ok"] for item in batch["results"]] == [True, False]
        await callbacks.heard(uri)

        completed = await client.complete(
            ResourceTemplateReference(uri="reflexio://users/{user_id}/interactions"),
            argument={"name": "user_id", "value": user_id[:9]},
        )
        assert user_id in completed.completion.values

        failed, listed, text = await call(client, "get_interactions", {"user_id": user_id})
        assert not failed, text
        assert listed["truncated"] is False
        contents = [turn["content"] for turn in listed["interactions"]]
        assert "Deployed." in contents
        target = next(t for t in listed["interactions"] if t["content"] == "Deployed.")

        failed, deleted, text = await call(
            client,
            "delete_interaction",
            {"user_id": user_id, "interaction_id": target["interaction_id"]},
        )
        assert not failed, text
        assert deleted["status"] == "deleted"
        assert len(callbacks.questions) == 1
        assert "Deployed." in callbacks.questions[0]
        await callbacks.heard(uri)

    assert callbacks.logs, "no MCP log message reached the client"
    assert AWS_KEY not in json.dumps([log.model_dump(mode="json") for log in callbacks.logs])
