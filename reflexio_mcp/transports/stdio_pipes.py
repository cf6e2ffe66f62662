"""stdio on the event loop: the client's pipes read and written without worker threads.

The SDK's stdio transport reads each line, writes each answer and flushes it in a worker
thread (anyio's file wrapper): three thread hand-offs per call, about 15 % of the server's CPU
for a search, and a wake-up of the loop each. When stdin and stdout are pipes or sockets (as
every MCP client starts a server), `serve_stdio` reads and writes them with asyncio's pipe
transports instead, and hands the lines to the SDK's own stdio session (`stdio_server` with
explicit streams), each first passed through the stdin guard's `checked_line`. Anything else
(a terminal, a file, Windows, stdout and stderr one pipe) is served as before: the guard in
front of stdin and the SDK's transport.

As the SDK does, the standard descriptors are claimed while serving: fd 0 reads the null
device and fd 1 writes to stderr, so a stray read or print never touches the protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
from mcp.server import MCPServer
from mcp.server.stdio import stdio_server

from reflexio_mcp.transports.stdio_guard import checked_line, guard_stdin

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 2**30
"""A longer line is dropped (logged): the SDK's own transport has no bound at all."""


def serve_stdio(server: MCPServer[Any]) -> None:
    """Serve `server` over stdio until the client closes stdin."""
    if not _pipes():
        guard_stdin()
        server.run("stdio")
        return
    anyio.run(_serve_pipes, server)


def _pipes() -> bool:
    """Whether stdin and stdout are pipes or sockets of their own (not one shared with
    stderr, which a non-blocking stdout would make non-blocking too)."""
    if sys.platform == "win32":
        return False
    try:
        modes = [os.fstat(fd) for fd in (0, 1, 2)]
    except OSError:
        return False
    stdin, stdout, stderr = modes
    if not all(stat.S_ISFIFO(m.st_mode) or stat.S_ISSOCK(m.st_mode) for m in (stdin, stdout)):
        return False
    return (stdout.st_dev, stdout.st_ino) != (stderr.st_dev, stderr.st_ino)


async def _serve_pipes(server: MCPServer[Any]) -> None:
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    async with _claimed() as (reader, writer):
        lines, answers = _Lines(reader), _Answers(writer)
        # The SDK only iterates the one and writes and flushes the other.
        stdin = cast("anyio.AsyncFile[str]", lines)
        stdout = cast("anyio.AsyncFile[str]", answers)
        try:
            async with stdio_server(stdin, stdout) as (read_stream, write_stream):
                await lowlevel.run(
                    read_stream, write_stream, lowlevel.create_initialization_options()
                )
        except* (ConnectionResetError, BrokenPipeError):
            logger.info("the client stopped reading stdout: the server stops")


@asynccontextmanager
async def _claimed() -> AsyncGenerator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """The client's pipes on the loop, fd 0 and 1 diverted meanwhile; restored on exit."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", buffering=0)
        )
        transports.append(read_transport)
        write_transport, write_protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
            os.fdopen(wire_out, "wb", buffering=0),
        )
        transports.append(write_transport)
        yield reader, asyncio.StreamWriter(write_transport, write_protocol, None, loop)
    finally:
        for transport in transports:
            transport.close()
        for fd, wire in ((0, wire_in), (1, wire_out)):
            try:
                os.set_blocking(wire, True)
                os.dup2(wire, fd)
            except OSError:
                pass


class _Lines:
    """The client's lines as the SDK reads them: text, each checked by the stdin guard."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        reader = self._reader
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                line = end.partial  # the last line, without its newline
                if not line:
                    return
            except asyncio.LimitOverrunError as over:
                await self._skip_line(over.consumed)
                continue
            # One line, none (dropped), or one per request of a batch.
            for message in checked_line(line).split(b"\n"):
                if message:
                    yield message.decode("utf-8")

    async def _skip_line(self, consumed: int) -> None:
        logger.warning(
            "ignored a message from the client longer than %d bytes: it cannot be read",
            MAX_LINE_BYTES,
        )
        reader = self._reader
        await reader.readexactly(consumed)
        while True:
            try:
                await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as over:
                await reader.readexactly(over.consumed)
            except asyncio.IncompleteReadError:
                return
            else:
                return


class _Answers:
    """The SDK's answers onto the client's pipe; flushing waits while the pipe is full."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()
