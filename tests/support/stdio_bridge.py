"""The bridge under test: the real reflexio-mcp over stdio, its client, and the wall time of
every tool call."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from mcp_types import TextContent, TextResourceContents

from tests.support.launch import server_command

DEADLINE = 5.0
"""REFLEXIO_MCP_DEADLINE of every bridge here."""
DELIVERY_SECONDS = 40.0
"""Once the backend answers again, every queued publish is delivered within this."""
FAST = {
    "REFLEXIO_TIMEOUT": "2",
    "REFLEXIO_CONNECT_TIMEOUT": "1",
    "REFLEXIO_MAX_RETRIES": "0",
    "REFLEXIO_MCP_DEADLINE": f"{DEADLINE:g}",
    "REFLEXIO_MCP_PUBLISH_RATE": "0",
}


@dataclass(frozen=True)
class Answer:
    failed: bool
    data: dict[str, Any]
    text: str
    seconds: float


@dataclass
class Bridge:
    """A running reflexio-mcp, its client, and the wall time of every tool call."""

    client: Client
    log: Path
    faulty: bool = False
    """Whether the backend misbehaves now (the calls' times are reported apart)."""
    timings: list[tuple[str, float, bool]] = field(default_factory=list[tuple[str, float, bool]])

    async def call(self, tool: str, arguments: dict[str, Any]) -> Answer:
        started = time.perf_counter()
        with anyio.fail_after(DEADLINE + 30):
            result = await self.client.call_tool(tool, arguments)
        seconds = time.perf_counter() - started
        self.timings.append((tool, seconds, self.faulty))
        block = result.content[0]
        assert isinstance(block, TextContent)
        if result.is_error:
            assert_clear(block.text)
        assert seconds < DEADLINE + 1, f"{tool} took {seconds:.2f} s: {block.text}"
        return Answer(bool(result.is_error), result.structured_content or {}, block.text, seconds)

    async def publish(self, user_id: str, content: str, **arguments: str) -> Answer:
        return await self.call(
            "publish_interaction",
            {"user_id": user_id, "user_message": content, "agent_response": "noted", **arguments},
        )

    async def queued(self, user_id: str, content: str, fault: str, **arguments: str) -> str:
        """Publish while the backend is faulty: answered `queued`, saying why; the request_id."""
        answer = await self.publish(user_id, content, **arguments)
        assert not answer.failed, answer.text
        assert answer.data["status"] == "queued", answer.data
        message = str(answer.data["message"])
        assert message.startswith("queued, not stored yet: "), message
        assert fault in message, message
        assert "get_publish_status" in message
        return str(answer.data["request_id"])

    async def publish_status(self, user_id: str, request_id: str) -> dict[str, Any]:
        answer = await self.call(
            "get_publish_status", {"user_id": user_id, "request_id": request_id}
        )
        assert not answer.failed, answer.text
        return answer.data

    async def wait_delivered(self, user_id: str, request_ids: list[str]) -> None:
        """Poll get_publish_status until every publish is delivered (bounded)."""
        last: dict[str, dict[str, Any]] = {}
        with anyio.move_on_after(DELIVERY_SECONDS):
            while True:
                for request_id in request_ids:
                    last[request_id] = await self.publish_status(user_id, request_id)
                if all(s["status"] == "delivered" for s in last.values()):
                    return
                await anyio.sleep(0.2)
        pytest.fail(f"not delivered within {DELIVERY_SECONDS:g} s: {last}")

    async def status(self) -> dict[str, Any]:
        """The reflexio://status document."""
        with anyio.fail_after(DEADLINE + 30):
            result = await self.client.read_resource("reflexio://status")
        content = result.contents[0]
        assert isinstance(content, TextResourceContents)
        return cast(dict[str, Any], json.loads(content.text))

    def slowest(self, *, faulty: bool) -> float:
        return max((s for _, s, f in self.timings if f == faulty), default=0.0)

    def report(self, name: str) -> None:
        print(
            f"\n{name}: {len(self.timings)} tool calls; slowest while the backend was faulty "
            f"{self.slowest(faulty=True) * 1000:.0f} ms, once healthy "
            f"{self.slowest(faulty=False) * 1000:.0f} ms"
        )


@asynccontextmanager
async def bridge(url: str, data_dir: Path, log: Path, **env: str) -> AsyncGenerator[Bridge]:
    command, args = server_command()
    parameters = StdioServerParameters(
        command=command,
        args=args,
        env={"REFLEXIO_URL": url, "REFLEXIO_MCP_DATA_DIR": str(data_dir), **FAST, **env},
    )
    with log.open("a") as errlog:
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            yield Bridge(client, log)
    text = await anyio.Path(log).read_text()
    assert "Traceback" not in text, text


def assert_clear(text: str) -> None:
    """An error a person can read: no traceback, no SDK prefix, no validation internals."""
    assert "Traceback" not in text, text
    assert not text.startswith("Error executing tool"), text
    assert "pydantic" not in text.lower(), text
