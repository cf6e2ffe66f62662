"""MCP logging: our log records reach the client that asked for them, at the level it asked, on
both protocol eras, and stderr stays as it was."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from mcp import Client, MCPDeprecationWarning, StdioServerParameters
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    LOG_LEVEL_META_KEY,
    LoggingLevel,
    LoggingMessageNotificationParams,
)
from pydantic import SecretStr

from reflexio_mcp.app import SharedBackend, build_server
from reflexio_mcp.backends.embedded.store import EmbeddedStore
from reflexio_mcp.settings import Settings
from reflexio_mcp.surface.client_logging import forward_logs
from tests.support.launch import server_command

TREE = logging.getLogger("reflexio_mcp")
CHATTY = logging.getLogger("reflexio_mcp.test_chatter")
SECRET = "sk-live-0123456789abcdefSECRET"


class Heard:
    """A logging_callback: what one client received."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str | None, Any]] = []
        self._arrival = anyio.Event()

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.messages.append((params.level, params.logger, params.data))
        self._arrival.set()

    def chatter(self) -> list[tuple[str, str]]:
        return [(level, data) for level, name, data in self.messages if name == CHATTY.name]

    def calls(self) -> list[str]:
        return [data for _, name, data in self.messages if name == "reflexio_mcp.calls"]

    async def wait_for(self, text: str) -> None:
        with anyio.fail_after(5):
            while not any(text in str(data) for _, _, data in self.messages):
                self._arrival = anyio.Event()
                await self._arrival.wait()


async def chatter(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Logs at four levels during every tools/call, naming the call by its query."""
    if ctx.method == "tools/call":
        arguments: dict[str, Any] = (ctx.params or {}).get("arguments") or {}
        marker = str(arguments.get("query"))
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            CHATTY.log(level, "%s at %s", marker, logging.getLevelName(level))
            await anyio.lowlevel.checkpoint()  # let concurrent calls interleave
    return await call_next(ctx)


def chatty_server(tmp_path: Path, backend: SharedBackend | None = None) -> MCPServer[Any]:
    server = build_server(Settings(backend="embedded", data_dir=tmp_path), backend)
    server.middleware.append(chatter)
    return server


async def set_level(client: Client, level: LoggingLevel) -> None:
    with pytest.warns(MCPDeprecationWarning):  # the 2025-era API is what this exercises
        await client.set_logging_level(level)  # pyright: ignore[reportDeprecated]


async def search(client: Client, marker: str) -> None:
    result = await client.call_tool("search_interactions", {"query": marker})
    assert not result.is_error


def said(marker: str, *levels: str) -> list[tuple[str, str]]:
    return [(level.lower(), f"{marker} at {level}") for level in levels]


@pytest.fixture(autouse=True)
def _logger_left_as_found() -> Iterator[None]:
    before = (TREE.level, TREE.propagate)
    yield
    assert (TREE.level, TREE.propagate) == before


async def test_legacy_client_hears_what_its_level_lets_through_before_the_result(
    tmp_path: Path,
) -> None:
    heard = Heard()
    async with Client(chatty_server(tmp_path), mode="legacy", logging_callback=heard) as client:
        assert client.server_capabilities.logging is not None
        await search(client, "unset")
        assert heard.messages == []  # none until the client sets a level

        await set_level(client, "info")
        await search(client, "first")
        # Already here when the result is: they went out on the request's stream before it.
        assert heard.chatter() == said("first", "INFO", "WARNING", "ERROR")
        assert len(heard.calls()) == 1
        assert heard.calls()[0].startswith("search_interactions: ok in ")

        with pytest.raises(MCPError) as refused:  # errors reach the client as they were
            await client.get_prompt("recall", {})
        assert refused.value.error.code == INVALID_PARAMS

        heard.messages.clear()
        await set_level(client, "error")
        await search(client, "second")
        assert heard.messages == [("error", CHATTY.name, "second at ERROR")]


async def test_modern_requests_hear_what_their_meta_asks_for(tmp_path: Path) -> None:
    server = chatty_server(tmp_path)
    unasked = Heard()
    async with Client(server, logging_callback=unasked) as client:
        await search(client, "quiet")
    assert unasked.messages == []  # no opt-in, nothing: the 2026-07-28 rule

    heard = Heard()
    async with Client(server, log_level="warning", logging_callback=heard) as client:
        await search(client, "loud")
        assert heard.messages == [
            ("warning", CHATTY.name, "loud at WARNING"),
            ("error", CHATTY.name, "loud at ERROR"),
        ]
        heard.messages.clear()
        result = await client.call_tool(
            "search_interactions", {"query": "one"}, meta={LOG_LEVEL_META_KEY: "debug"}
        )
        assert not result.is_error
        assert heard.chatter() == said("one", "DEBUG", "INFO", "WARNING", "ERROR")
        assert len(heard.calls()) == 1


async def test_concurrent_clients_each_hear_their_own_requests_at_their_own_level(
    tmp_path: Path,
) -> None:
    # Held open here: clients that start and stop in different tasks must not be the ones to
    # open and close the store (as the HTTP server holds it for its sessions).
    backend = SharedBackend(EmbeddedStore(tmp_path), "default")
    server = chatty_server(tmp_path, backend)
    heard = {name: Heard() for name in ("info", "warning", "debug", "deaf")}
    clients = {
        "info": Client(server, mode="legacy", logging_callback=heard["info"]),
        "warning": Client(server, mode="legacy", logging_callback=heard["warning"]),
        "debug": Client(server, log_level="debug", logging_callback=heard["debug"]),
        "deaf": Client(server, logging_callback=heard["deaf"]),
    }

    async def run(name: str) -> None:
        async with clients[name] as client:
            if name in ("info", "warning"):
                await set_level(client, name)
            for n in range(3):
                await search(client, f"{name}{n}")

    async with backend, anyio.create_task_group() as tasks:
        for name in clients:
            tasks.start_soon(run, name)

    def expected(name: str, *levels: str) -> list[tuple[str, str]]:
        return [line for n in range(3) for line in said(f"{name}{n}", *levels)]

    assert heard["info"].chatter() == expected("info", "INFO", "WARNING", "ERROR")
    assert heard["warning"].chatter() == expected("warning", "WARNING", "ERROR")
    assert heard["debug"].chatter() == expected("debug", "DEBUG", "INFO", "WARNING", "ERROR")
    assert heard["deaf"].messages == []
    assert (len(heard["info"].calls()), len(heard["warning"].calls())) == (3, 0)
    assert len(heard["debug"].calls()) == 3


async def test_stderr_is_unchanged_while_a_client_listens_below_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    heard = Heard()
    async with Client(chatty_server(tmp_path), log_level="debug", logging_callback=heard) as client:
        await search(client, "low")
    assert heard.chatter() == said("low", "DEBUG", "INFO", "WARNING", "ERROR")
    stderr = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith(TREE.name)]
    assert stderr == [("WARNING", "low at WARNING"), ("ERROR", "low at ERROR")]


@pytest.mark.parametrize(("stderr_level", "lines"), [(logging.INFO, 0), (logging.DEBUG, 1)])
async def test_the_per_call_line_shows_on_stderr_at_debug_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stderr_level: int, lines: int
) -> None:
    caplog.set_level(stderr_level)
    async with Client(build_server(Settings(backend="embedded", data_dir=tmp_path))) as client:
        await search(client, "anything")
    calls = [r for r in caplog.records if r.name == "reflexio_mcp.calls"]
    assert len(calls) == lines
    assert all(r.levelno == logging.DEBUG for r in calls)


async def test_a_warning_from_an_unreachable_backend_reaches_the_client_without_the_key(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        url=f"http://127.0.0.1:{port}", data_dir=tmp_path, api_key=SecretStr(SECRET), max_retries=0
    )
    heard = Heard()
    async with Client(build_server(settings), mode="legacy", logging_callback=heard) as client:
        await set_level(client, "debug")
        for _ in range(3):  # the circuit breaker opens at the third failure in a row
            result = await client.call_tool("search_interactions", {"query": "x"})
            assert result.is_error
        await heard.wait_for("failed 3 times in a row")
    assert ("warning", "reflexio_mcp.backends.reflexio.breaker") in {
        (m[0], m[1]) for m in heard.messages
    }
    assert heard.calls()
    assert all("error in" in line for line in heard.calls())
    assert SECRET not in repr(heard.messages)


@pytest.mark.parametrize("multi_user", [False, True])
async def test_records_outside_requests_reach_legacy_listeners_of_a_single_user_server(
    multi_user: bool,
) -> None:
    server = MCPServer[Any]("bare")
    forward_logs(server, multi_user=multi_user)
    heard = Heard()
    async with Client(server, mode="legacy", logging_callback=heard) as client:
        await set_level(client, "warning")
        CHATTY.info("background info")
        CHATTY.warning("background warning")
        if multi_user:
            await anyio.sleep(0.1)
        else:
            await heard.wait_for("background warning")
    expected = [] if multi_user else [("warning", CHATTY.name, "background warning")]
    assert heard.messages == expected


async def test_one_handler_however_many_servers(tmp_path: Path) -> None:
    for n in range(3):
        build_server(Settings(backend="embedded", data_dir=tmp_path / str(n)))
    ours = [h for h in TREE.handlers if type(h).__module__ == "reflexio_mcp.surface.client_logging"]
    assert len(ours) == 1


async def test_over_stdio_a_client_that_sets_a_level_hears_the_calls(tmp_path: Path) -> None:
    command, args = server_command()
    parameters = StdioServerParameters(
        command=command,
        args=[*args, "--backend", "embedded", "--data-dir", str(tmp_path)],
        env={"REFLEXIO_MCP_LOG_LEVEL": "WARNING"},  # below stderr's level: still forwarded
    )
    heard = Heard()
    with anyio.fail_after(30):
        async with Client(parameters, mode="legacy", logging_callback=heard) as client:
            await set_level(client, "info")
            await search(client, "over stdio")
            await heard.wait_for("search_interactions: ok in ")
    assert heard.messages[0][:2] == ("info", "reflexio_mcp.calls")
