"""A publish that waits for learning reports progress, in order, and stops waiting when the
client cancels; the publish itself is stored before the wait begins. Reflexio learning for
minutes cannot be produced on demand (offline it answers at once), so Reflexio is an
httpx2.MockTransport here whose /api/learning_status answers only when told to."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from reflexio_mcp.app import build_server
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.durable import ReflexioBackend
from reflexio_mcp.backends.reflexio.outbox import Outbox
from reflexio_mcp.core import defaults
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface import publishing

URL = "http://127.0.0.1:9"


@dataclass
class LearningReflexio:
    """Answers /health and publishes at once, and whether it learned from a publish once
    `learned` is set."""

    learned: anyio.Event = field(default_factory=anyio.Event)
    publishes: list[dict[str, object]] = field(default_factory=list[dict[str, object]])
    cancelled: int = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/publish_interaction":
            self.publishes.append(json.loads(request.content))
            return httpx2.Response(200, json={"success": True, "message": "published"})
        if request.url.path != "/api/learning_status":
            return httpx2.Response(200, json={"status": "healthy"})
        try:
            await self.learned.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        return httpx2.Response(200, json={"status": "done"})


@pytest.fixture(autouse=True)
def _fast_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publishing, "PROGRESS_SECONDS", 0.05)


@pytest.fixture
def reflexio() -> LearningReflexio:
    return LearningReflexio()


@pytest.fixture
async def client(reflexio: LearningReflexio, tmp_path: Path) -> AsyncGenerator[Client]:
    settings = Settings(url=URL, data_dir=tmp_path, publish_rate=0)
    backend = ReflexioBackend(
        # A mock transport has no connection to time out: the whole question is bounded by
        # its connect and read timeouts together, so connect is short here.
        ReflexioApi(
            URL, transport=httpx2.MockTransport(reflexio), max_retries=0, connect_timeout=0.5
        ),
        Outbox(tmp_path, URL),
        publish_rate=0,
    )
    async with Client(build_server(settings, backend)) as connected:
        yield connected


PUBLISH = {"user_message": "hi", "agent_response": "hello", "wait_for_response": True}


async def test_progress_is_reported_in_order_while_learning(
    client: Client, reflexio: LearningReflexio
) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))
        if len(reports) == 4:
            reflexio.learned.set()

    result = await client.call_tool("publish_interaction", PUBLISH, progress_callback=progress)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["status"] == "stored"
    assert result.structured_content["learning"] == "done"
    assert len(reports) >= 4
    values = [done for done, _, _ in reports]
    assert values == sorted(set(values)), "progress must increase with every report"
    assert all(total is None for _, total, _ in reports)
    assert reports[0][2] == "sent; waiting for Reflexio to learn from it"
    assert reports[1][2] is not None
    assert reports[1][2].startswith("still waiting for Reflexio")


async def test_no_progress_without_waiting(client: Client, reflexio: LearningReflexio) -> None:
    reflexio.learned.set()
    reports: list[float] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    arguments = {**PUBLISH, "wait_for_response": False}
    result = await client.call_tool("publish_interaction", arguments, progress_callback=progress)
    assert not result.is_error, result.content
    assert reports == []


async def test_cancelling_stops_the_wait_and_keeps_the_publish(
    client: Client, reflexio: LearningReflexio
) -> None:
    reports: list[float] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    arguments = {**PUBLISH, "request_id": "cancelled-while-learning"}
    async with anyio.create_task_group() as calls:

        async def publish() -> None:
            await client.call_tool("publish_interaction", arguments, progress_callback=progress)

        calls.start_soon(publish)
        with anyio.fail_after(5):
            while not (reflexio.publishes and len(reports) >= 2):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        calls.cancel_scope.cancel()
    with anyio.fail_after(5):
        while reflexio.cancelled == 0:  # noqa: ASYNC110 - the server stops waiting on Reflexio
            await anyio.sleep(0.01)
    # The wait was cancelled: let learning end, or get_publish_status's own question about
    # learning would wait on the fake until LEARNING_STATUS_SECONDS (the next test).
    reflexio.learned.set()
    status = await client.call_tool(
        "get_publish_status", {"request_id": "cancelled-while-learning"}
    )
    assert status.structured_content is not None
    # Stored before the wait for learning began: cancelling the wait loses nothing.
    assert status.structured_content["status"] == "delivered", status.structured_content
    assert [p["request_id"] for p in reflexio.publishes] == ["cancelled-while-learning"]


async def test_a_status_reflexio_cannot_tell_the_learning_of_answers_within_seconds(
    client: Client, reflexio: LearningReflexio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reflexio never answers /api/learning_status here: get_publish_status still answers, with
    the publish's own state, after LEARNING_STATUS_SECONDS, not REFLEXIO_TIMEOUT (30 s)."""
    monkeypatch.setattr(defaults, "LEARNING_STATUS_SECONDS", 0.2)
    arguments = {**PUBLISH, "wait_for_response": False, "request_id": "learning-unknown"}
    assert not (await client.call_tool("publish_interaction", arguments)).is_error
    with anyio.fail_after(5):  # well under REFLEXIO_TIMEOUT: the question is bounded
        while True:
            status = await client.call_tool(
                "get_publish_status", {"request_id": "learning-unknown"}
            )
            answer: dict[str, Any] = status.structured_content or {}
            if answer.get("status") == "delivered":
                break
            await anyio.sleep(0.05)
    assert not status.is_error
    assert answer["learning"].startswith("unknown: Reflexio could not say"), answer
    assert "did not answer /api/learning_status within 0.2 s" in answer["learning"], answer
    assert reflexio.cancelled >= 1  # the question was given up, not left open
