"""The real `reflexio-mcp` process over stdio, driven by the SDK Client, against real Reflexio."""

from __future__ import annotations

import http.server
import json
import socket
import tempfile
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from mcp_types import TextResourceContents

from tests.support.launch import server_command
from tests.support.loopback_http import serving
from tests.support.mcp_http import call
from tests.support.reflexio_server import SERVER_KEY, RunningServer, stop

CALL_SECONDS = 60


@asynccontextmanager
async def stdio_session(url: str, **env: str) -> AsyncGenerator[Client]:
    command, args = server_command()
    with tempfile.TemporaryDirectory() as data_dir:
        parameters = StdioServerParameters(
            command=command,
            args=args,
            env={
                "REFLEXIO_URL": url,
                "REFLEXIO_MAX_RETRIES": "1",
                "REFLEXIO_MCP_DATA_DIR": data_dir,
                **env,
            },
        )
        with anyio.fail_after(CALL_SECONDS):
            async with Client(parameters) as client:
                yield client


async def test_conversation_round_trip_over_stdio(reflexio: RunningServer, user_id: str) -> None:
    conversation = [
        {"role": "User", "content": "Which flight did I book to Lisbon?"},
        {
            "role": "Agent",
            "content": "TP1357 on Friday at 09:40.",
            "expert_content": "TP1357 on Friday at 09:40, seat 14C, bag included.",
            "tools_used": [
                {"tool_name": "bookings.lookup", "tool_data": {"city": "Lisbon"}, "status": "ok"}
            ],
        },
        {"role": "User", "content": "Great, and the hotel?"},
    ]
    async with stdio_session(reflexio.url) as client:
        failed, published, _ = await call(
            client,
            "publish_interaction",
            {"user_id": user_id, "interactions": conversation, "source": "stdio-test"},
        )
        assert not failed
        assert published["stored"] == 3

        failed, listed, _ = await call(client, "get_interactions", {"user_id": user_id})
        assert not failed
        assert listed["count"] == 3
        agent = next(i for i in listed["interactions"] if i["role"] == "Agent")
        assert agent["expert_content"] == "TP1357 on Friday at 09:40, seat 14C, bag included."
        assert agent["tools_used"][0]["tool_name"] == "bookings.lookup"

        failed, found, _ = await call(
            client, "search_interactions", {"user_id": user_id, "query": "Lisbon flight"}
        )
        assert not failed
        assert [i["content"] for i in found["interactions"]] == [
            "Which flight did I book to Lisbon?"
        ]

        target = found["interactions"][0]["interaction_id"]
        failed, deleted, _ = await call(
            client,
            "delete_interaction",
            {"user_id": user_id, "interaction_id": target, "confirm": True},
        )
        assert not failed
        assert deleted["deleted"]["interaction_id"] == target
        _, after, _ = await call(client, "get_interactions", {"user_id": user_id})
        assert target not in {i["interaction_id"] for i in after["interactions"]}
        assert after["count"] == 2

        failed, _, message = await call(
            client, "delete_interaction", {"user_id": user_id, "interaction_id": 987654321}
        )
        assert failed
        assert "no interaction 987654321" in message

        failed, _, message = await call(
            client,
            "publish_interaction",
            {"user_id": user_id, "source": "Chat Bad", "user_message": "a", "agent_response": "b"},
        )
        assert failed
        assert "source: must be lowercase letters" in message


async def test_backend_stopped_gives_the_unreachable_error(
    crashable_reflexio: RunningServer, user_id: str
) -> None:
    server = crashable_reflexio  # the next test that asks for it gets it restarted
    async with stdio_session(server.url) as client:
        failed, _, _ = await call(client, "get_interactions", {"user_id": user_id})
        assert not failed
        stop(server)
        failed, _, message = await call(client, "get_interactions", {"user_id": user_id})
        assert failed
        assert message == (
            f"Reflexio backend unreachable at {server.url} (connection refused): start it "
            "with `reflexio services start`, or set REFLEXIO_URL"
        )
        with anyio.fail_after(CALL_SECONDS):
            status = await client.read_resource("reflexio://status")
        content = status.contents[0]
        assert isinstance(content, TextResourceContents)
        assert json.loads(content.text)["reachable"] is False
        assert "unreachable" in json.loads(content.text)["detail"]
        # The server survives the failure; a publish waits in the outbox.
        failed, published, message = await call(
            client, "publish_interaction", {"user_message": "a", "agent_response": "b"}
        )
        assert not failed
        assert published["status"] == "queued"
        assert "unreachable" in message


async def test_right_api_key_passes(keyed_reflexio: RunningServer, user_id: str) -> None:
    async with stdio_session(keyed_reflexio.url, REFLEXIO_API_KEY=SERVER_KEY) as client:
        failed, published, message = await call(
            client,
            "publish_interaction",
            {"user_id": user_id, "user_message": "hi", "agent_response": "hello"},
        )
        assert not failed, message
        _, listed, _ = await call(client, "get_interactions", {"user_id": user_id})
        assert listed["count"] == published["stored"] == 2


@pytest.mark.parametrize(
    ("key", "fix"),
    [
        ("rk-wrong-key", "the REFLEXIO_API_KEY given is not one this Reflexio server accepts"),
        (None, "this Reflexio server needs an API key: set REFLEXIO_API_KEY"),
    ],
)
async def test_wrong_or_missing_api_key_is_a_clear_auth_error(
    keyed_reflexio: RunningServer, user_id: str, key: str | None, fix: str
) -> None:
    env = {"REFLEXIO_API_KEY": key} if key else {}
    async with stdio_session(keyed_reflexio.url, **env) as client:
        failed, _, message = await call(client, "get_interactions", {"user_id": user_id})
    assert failed
    assert "refused the call (401" in message
    assert fix in message
    assert SERVER_KEY not in message
    if key:
        assert key not in message


async def test_debug_logs_go_to_stderr_and_never_hold_the_key(
    keyed_reflexio: RunningServer, tmp_path: Path, user_id: str
) -> None:
    command, args = server_command()
    parameters = StdioServerParameters(
        command=command,
        args=args,
        env={
            "REFLEXIO_URL": keyed_reflexio.url,
            "REFLEXIO_API_KEY": SERVER_KEY,
            "REFLEXIO_MCP_LOG_LEVEL": "DEBUG",
            "REFLEXIO_MCP_DATA_DIR": str(tmp_path),
        },
    )
    log = tmp_path / "stderr.log"
    with log.open("w") as errlog, anyio.fail_after(CALL_SECONDS):
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            failed, _, _ = await call(
                client,
                "publish_interaction",
                {"user_id": user_id, "user_message": "hi", "agent_response": "ho"},
            )
            assert not failed
            failed, _, _ = await call(
                client, "delete_interaction", {"user_id": user_id, "interaction_id": 1}
            )
    text = log.read_text()
    assert f"serving Reflexio at {keyed_reflexio.url}" in text
    assert "POST /api/publish_interaction -> 200" in text
    assert SERVER_KEY not in text


async def text_appears(log: Path, text: str) -> None:
    """Wait (bounded by the caller's fail_after) until a server's log holds `text`."""
    for _ in range(CALL_SECONDS * 20):
        if text in await anyio.Path(log).read_text():
            return
        await anyio.sleep(0.05)


class EchoingBackend(http.server.BaseHTTPRequestHandler):
    """A misbehaving backend: every API answer is a 422 that repeats the Authorization header."""

    def do_GET(self) -> None:
        self._answer(200, {"status": "healthy"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization", "")
        detail = [{"loc": ["header", auth], "msg": f"{'x' * 280}{auth}", "type": "value_error"}]
        self._answer(422, {"detail": detail})

    def _answer(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echoing_backend() -> Iterator[str]:
    with serving(EchoingBackend) as port:
        yield f"127.0.0.1:{port}"


async def test_neither_key_nor_url_password_reaches_results_instructions_or_logs(
    echoing_backend: str, tmp_path: Path
) -> None:
    command, args = server_command()
    password = "pw-9f8e7d6c5b"
    parameters = StdioServerParameters(
        command=command,
        args=args,
        env={
            "REFLEXIO_URL": f"http://alice:{password}@{echoing_backend}",
            "REFLEXIO_API_KEY": SERVER_KEY,
            "REFLEXIO_MCP_LOG_LEVEL": "DEBUG",
            "REFLEXIO_MAX_RETRIES": "0",
            "REFLEXIO_MCP_DATA_DIR": str(tmp_path),
        },
    )
    log = tmp_path / "stderr.log"
    seen: list[str] = []
    with log.open("w") as errlog, anyio.fail_after(CALL_SECONDS):
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            seen.append(str(client.instructions))
            for tool, arguments in [
                ("publish_interaction", {"user_message": "hi", "agent_response": "ho"}),
                ("get_interactions", {}),
                ("search_interactions", {"query": "x"}),
            ]:
                failed, _, message = await call(client, tool, arguments)
                assert failed
                assert message.startswith("invalid input: header.Bearer ***: xxxx")
                seen.append(message)
            status = await client.read_resource("reflexio://status")
            seen.append(str(status))
    seen.append(log.read_text())
    for text in seen:
        assert SERVER_KEY not in text
        assert SERVER_KEY[:8] not in text
        assert password not in text
    assert f"serving Reflexio at http://{echoing_backend}" in seen[-1]


async def test_a_backend_that_is_down_at_start_is_a_warning_not_a_delay(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    command, args = server_command()
    parameters = StdioServerParameters(
        command=command,
        args=args,
        env={
            "REFLEXIO_URL": url,
            "REFLEXIO_MAX_RETRIES": "0",
            "REFLEXIO_MCP_DATA_DIR": str(tmp_path),
        },
    )
    log = tmp_path / "stderr.log"
    with log.open("w") as errlog, anyio.fail_after(CALL_SECONDS):
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            tools = await client.list_tools()
            assert len(tools.tools) == 8  # with search_learnings and delete_learning
            await text_appears(log, "WARNING")
    warning = next(line for line in log.read_text().splitlines() if "WARNING" in line)
    assert warning.endswith(
        f"Reflexio backend unreachable at {url} (connection refused): start it with "
        "`reflexio services start`, or set REFLEXIO_URL; reads fail until it answers, and "
        "publishes wait in the outbox"
    )
