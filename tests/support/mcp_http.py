"""The real `reflexio-mcp` process serving HTTP, and SDK clients that reach it.

`http_bridge` starts the console script on a free loopback port, waits for /healthz, and stops
it by its own pid however the block ends. `http_client` is the SDK Client over Streamable HTTP
or SSE, with an access token when given one.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from tests.support.reflexio_server import free_port, stop_group

STARTUP_SECONDS = 30.0
CALL_SECONDS = 60.0
HttpTransport = Literal["streamable-http", "sse"]
INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "reflexio-mcp-tests", "version": "1"},
    },
}
"""The simplest valid MCP request, for raw HTTP checks."""
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@dataclass
class HttpBridge:
    base_url: str
    endpoint: str
    transport: HttpTransport
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def bridge_command() -> list[str]:
    script = Path(sys.executable).parent / "reflexio-mcp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reflexio_mcp"]


@contextmanager
def http_bridge(
    workdir: Path,
    *args: str,
    transport: HttpTransport = "streamable-http",
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Generator[HttpBridge]:
    """`reflexio-mcp --transport <transport>` on a free port (data in `workdir`)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"reflexio-mcp-{port}.log"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "REFLEXIO_MCP_DATA_DIR": str(workdir / "data"),
        **(env or {}),
    }
    command = [*bridge_command(), "--transport", transport, "--port", str(port), *args]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    path = "/sse" if transport == "sse" else "/mcp"
    for arg, value in itertools.pairwise(args):
        if arg == "--path":
            path = value
    base_url = f"http://127.0.0.1:{port}"
    bridge = HttpBridge(base_url, base_url + path, transport, process, log)
    try:
        wait_healthy(bridge)
        yield bridge
    finally:
        stop_bridge(bridge)


def wait_healthy(bridge: HttpBridge) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if bridge.process.poll() is not None:
            raise AssertionError(
                f"reflexio-mcp exited with {bridge.process.returncode} while starting:\n"
                + bridge.log_text()[-3000:]
            )
        try:
            if httpx2.get(f"{bridge.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"reflexio-mcp did not answer /healthz:\n{bridge.log_text()[-3000:]}")


def stop_bridge(bridge: HttpBridge) -> int:
    """SIGTERM (the bridge drains, then exits), then SIGKILL if it lingers; the exit code."""
    return stop_group(bridge.process, seconds=20)


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@asynccontextmanager
async def http_client(
    endpoint: str,
    *,
    transport: HttpTransport = "streamable-http",
    token: str | None = None,
    mode: Literal["auto", "legacy"] = "auto",
    **options: Any,
) -> AsyncGenerator[Client]:
    """An SDK Client connected to `endpoint`, with `options` for Client (callbacks). SSE
    speaks only the legacy (handshake) era."""
    headers = auth_headers(token)
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        if transport == "sse":
            connection: Any = sse_client(endpoint, headers=headers)
            mode = "legacy"
        else:
            connection = streamable_http_client(endpoint, http_client=http)
        with anyio.fail_after(CALL_SECONDS):
            async with Client(connection, mode=mode, **options) as client:
                yield client


async def call(
    client: Client, tool: str, arguments: dict[str, Any]
) -> tuple[bool, dict[str, Any], str]:
    """(is_error, structured result, text) of one tool call."""
    with anyio.fail_after(CALL_SECONDS):
        result = await client.call_tool(tool, arguments)
    block = result.content[0]
    assert isinstance(block, TextContent)
    return bool(result.is_error), result.structured_content or {}, block.text
