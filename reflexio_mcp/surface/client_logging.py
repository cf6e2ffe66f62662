"""MCP logging: the `reflexio_mcp` log records a client asked for reach it as
`notifications/message`, besides stderr.

What a client gets:
- 2025-11-25 and earlier (`logging/setLevel`): the records at or above the level that
  connection set, none before it sets one (the spec names no default; "none until asked" is
  what 2026-07-28 made the rule, and stderr already has everything). Records emitted while one
  of its requests is handled ride that request's stream; on a single-user server, records
  emitted outside any request (the outbox deliverer, the reachability probe) go to every such
  connection's standalone stream. With access tokens (several users in one process) those stay
  on stderr: they can concern any user.
- 2026-07-28: per request, the records at or above the level its `_meta`
  `io.modelcontextprotocol/logLevel` names, none without it (the spec's MUST NOT).

`data` is the record's formatted message alone (never a traceback or extra fields), `logger` the
record's logger name. The middleware also reports each finished tools/call at INFO on
`reflexio_mcp.calls` (tool, ok/error, milliseconds); stderr shows that line at DEBUG only, so the
default stderr output is unchanged.

Stderr filtering is unchanged: while some client listens below the stderr level, the
`reflexio_mcp` logger is lowered to that level and stops propagating, and the forwarding handler
passes the records at or above the stderr level on to the parent's handlers itself. When nobody
listens below the stderr level nothing about the logger changes, so a `logger.debug()` nobody
wants still costs one cached level check.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from contextvars import ContextVar
from typing import Any, Final, NamedTuple, cast

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import MCPServer
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp_types import (
    LOG_LEVEL_META_KEY,
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

TREE: Final = logging.getLogger("reflexio_mcp")
CALLS: Final = logging.getLogger("reflexio_mcp.calls")

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 10,
    "emergency": logging.CRITICAL + 20,
}
"""An MCP level as the lowest stdlib level it lets through."""

_STATE_KEY = "reflexio_mcp.log_level"
"""Where a 2025-era connection's level lives in its `Connection.state`."""


def forward_logs(server: MCPServer[Any], *, multi_user: bool) -> None:
    """Serve `logging/setLevel` on `server` and forward our log records to the clients that
    asked (see the module docstring). `multi_user`: several users share this process, so
    records from outside any request stay on stderr."""
    if _FORWARDER not in TREE.handlers:
        TREE.addHandler(_FORWARDER)
    background = None if multi_user else _Background()
    # MCPServer has no public way to add a request handler or wrap the server's lifespan yet
    # (docs/migration.md, "Registering lowlevel handlers from MCPServer"; the SDK's own
    # InMemoryTransport reaches for it the same way).
    lowlevel: Server[Any] = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]

    async def set_level(
        ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        connection = _connection(ctx)
        previous: int | None = connection.state.get(_STATE_KEY)
        level = LEVELS[params.level]
        if previous is None:
            connection.exit_stack.callback(_forget, connection, background)
        else:
            _LISTENING.remove(previous)
        connection.state[_STATE_KEY] = level
        _LISTENING.add(level)
        if background is not None:
            background.listeners[connection] = (ctx.session, level)
        return EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    if background is not None:
        lowlevel.lifespan = background.beside(lowlevel.lifespan)
    # Outermost: it sees every request's final outcome (refusals and deadline stops included)
    # and the records of every other middleware, and no deadline cuts its flush short.
    server.middleware.insert(0, _forward)


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # Per-connection state belongs on `Connection` (`state`, `exit_stack`), which the request
    # context does not expose yet (docs/migration.md: "not currently reachable from ctx");
    # every request's session proxy holds it.
    return ctx.session._connection  # pyright: ignore[reportPrivateUsage]


def _forget(connection: Connection, background: _Background | None) -> None:
    level: int | None = connection.state.pop(_STATE_KEY, None)
    if level is not None:
        _LISTENING.remove(level)
    if background is not None:
        background.listeners.pop(connection, None)


class _Entry(NamedTuple):
    levelno: int
    level: LoggingLevel
    logger: str
    data: str


def _entry(record: logging.LogRecord) -> _Entry | None:
    try:
        text = record.getMessage()
    except Exception:  # noqa: BLE001  a broken log call is reported by the stderr handler
        return None
    return _Entry(record.levelno, _mcp_level(record.levelno), record.name, text)


def _mcp_level(levelno: int) -> LoggingLevel:
    if levelno < logging.INFO:
        return "debug"
    if levelno < logging.WARNING:
        return "info"
    if levelno < logging.ERROR:
        return "warning"
    return "error" if levelno < logging.CRITICAL else "critical"


def _message(entry: _Entry) -> LoggingMessageNotification:
    return LoggingMessageNotification(
        params=LoggingMessageNotificationParams(
            level=entry.level, logger=entry.logger, data=entry.data
        )
    )


class _Listening:
    """The levels clients listen at right now (connections' set levels, requests' opt-ins),
    and the `reflexio_mcp` logger lowered to the lowest while it is below the stderr level.
    Changed on the event loop's thread only."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.saved: tuple[int, bool] | None = None
        """The logger's own level and propagate flag while it is lowered."""
        self._lowered_to = logging.NOTSET

    def add(self, level: int) -> None:
        self._counts[level] = self._counts.get(level, 0) + 1
        self._tune()

    def remove(self, level: int) -> None:
        left = self._counts.get(level, 0) - 1
        if left > 0:
            self._counts[level] = left
        else:
            self._counts.pop(level, None)
        self._tune()

    def stderr_level(self) -> int:
        """The level the logger would have without us."""
        if self.saved is None:
            return TREE.getEffectiveLevel()
        if self.saved[0] != logging.NOTSET:
            return self.saved[0]
        return TREE.parent.getEffectiveLevel() if TREE.parent else logging.WARNING

    def _tune(self) -> None:
        lowest = min(self._counts, default=None)
        if lowest is not None and lowest < self.stderr_level():
            if self.saved is None:
                self.saved = (TREE.level, TREE.propagate)
                TREE.propagate = False
            if TREE.level != lowest:
                TREE.setLevel(lowest)
            self._lowered_to = lowest
        elif self.saved is not None:
            level, propagate = self.saved
            self.saved = None
            if TREE.level == self._lowered_to:  # else someone set it since: theirs stays
                TREE.setLevel(level)
            TREE.propagate = propagate


_LISTENING = _Listening()


class _Channel:
    """One request's log records, on their way to its client. The task that sends them starts
    with the first record, so a request that logs nothing costs only the task group."""

    def __init__(
        self, floor: int, tasks: TaskGroup | None, session: ServerSession | None, request_id: Any
    ) -> None:
        self.floor = floor
        self.open = tasks is not None
        self.pending: deque[_Entry] = deque()  # appended from any thread
        self._tasks = tasks
        self._session = session
        self._request_id = request_id
        self._wake: MemoryObjectSendStream[None] | None = None
        self._thread = threading.get_ident()

    def add(self, entry: _Entry) -> None:
        self.pending.append(entry)
        # From another thread (anyio.to_thread copies the context) the entry waits for the next
        # wake-up, or the end of the request at the latest: anyio streams are not thread-safe.
        if self._tasks is None or self._session is None or threading.get_ident() != self._thread:
            return
        if self._wake is None:
            self._wake, wakes = anyio.create_memory_object_stream[None](math.inf)
            self._tasks.start_soon(_deliver, self._session, self._request_id, self.pending, wakes)
        with suppress(anyio.BrokenResourceError):  # the request is being cancelled
            self._wake.send_nowait(None)

    def close(self) -> None:
        self.open = False
        if self._wake is not None:
            self._wake.close()


_CHANNEL: ContextVar[_Channel | None] = ContextVar("reflexio_mcp_log_channel", default=None)
"""The channel of the request being handled; None outside any request."""
_UNHEARD = _Channel(logging.NOTSET, None, None, None)
"""The channel of a request whose client does not listen: its records go nowhere (not to
background delivery: that would hand them to another client)."""


class _Background:
    """A single-user server's records from outside any request, to each 2025-era connection
    that set a level. One stream per server, consumed by one delivering task per running
    lifespan (the SSE transport runs one per connection), so each record goes out once."""

    def __init__(self) -> None:
        self.listeners: dict[Connection, tuple[ServerSession, int]] = {}
        self._streams: tuple[MemoryObjectSendStream[_Entry], MemoryObjectReceiveStream[_Entry]]
        self._thread = 0
        self._running = 0

    def put(self, entry: _Entry) -> None:
        if threading.get_ident() == self._thread and any(
            entry.levelno >= floor for _, floor in self.listeners.values()
        ):
            self._streams[0].send_nowait(entry)

    def beside(
        self, lifespan: Callable[[Server[Any]], AbstractAsyncContextManager[Any]]
    ) -> Callable[[Server[Any]], AbstractAsyncContextManager[Any]]:
        @asynccontextmanager
        async def running(app: Server[Any]) -> AsyncGenerator[Any]:
            if self._running == 0:
                self._streams = anyio.create_memory_object_stream[_Entry](math.inf)
                self._thread = threading.get_ident()
                _BACKGROUND.add(self)
            self._running += 1
            failure: Exception | None = None
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._deliver, self._streams[1].clone())
                    try:
                        async with lifespan(app) as state:
                            yield state
                    except Exception as err:  # noqa: BLE001  re-raised below, unwrapped
                        failure = err
                    finally:
                        tasks.cancel_scope.cancel()
                if failure is not None:
                    raise failure
            finally:
                self._running -= 1
                if self._running == 0:
                    _BACKGROUND.discard(self)
                    self._streams[0].close()
                    self._streams[1].close()

        return running

    async def _deliver(self, entries: MemoryObjectReceiveStream[_Entry]) -> None:
        async with entries:
            async for entry in entries:
                for session, floor in list(self.listeners.values()):
                    if entry.levelno >= floor:
                        await _send(session, entry, None)


_BACKGROUND: set[_Background] = set()
"""The single-user servers whose lifespan is running."""


class _Forwarder(logging.Handler):
    """On the `reflexio_mcp` logger: each record to the channel of the request it was emitted
    in, else to the single-user servers' background delivery; and, while the logger is lowered,
    the records at or above the stderr level on to the parent's handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        saved = _LISTENING.saved
        if saved is not None and saved[1] and record.levelno >= _LISTENING.stderr_level():
            _propagate(record)
        channel = _CHANNEL.get()
        if channel is None:
            if _BACKGROUND and (entry := _entry(record)) is not None:
                for background in list(_BACKGROUND):
                    background.put(entry)
        elif channel.open and record.levelno >= channel.floor and record.name != CALLS.name:
            entry = _entry(record)
            if entry is not None:
                channel.add(entry)


_FORWARDER: Final = _Forwarder()


def _propagate(record: logging.LogRecord) -> None:
    """What `Logger.callHandlers` does past `reflexio_mcp`, had it propagated."""
    logger = TREE.parent
    while logger is not None:
        for handler in logger.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        logger = logger.parent if logger.propagate else None


async def _forward(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """The middleware: opens the request's channel when its client listens."""
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    if ctx.request_id is None:  # a notification: nobody to tell
        floor = None
    else:
        floor = _requested(ctx.meta) if modern else _connection(ctx).state.get(_STATE_KEY)
    timed = ctx.method == "tools/call" and (
        (floor is not None and floor <= logging.INFO) or CALLS.isEnabledFor(logging.DEBUG)
    )
    if floor is None:
        token = _CHANNEL.set(_UNHEARD)
        try:
            return await (_timed(ctx, call_next, None) if timed else call_next(ctx))
        finally:
            _CHANNEL.reset(token)
    if modern:
        _LISTENING.add(floor)
    try:
        result: HandlerResult = None
        failure: Exception | None = None
        channel: _Channel | None = None
        async with anyio.create_task_group() as tasks:
            channel = _Channel(floor, tasks, ctx.session, ctx.request_id)
            token = _CHANNEL.set(channel)
            try:
                result = await (_timed(ctx, call_next, channel) if timed else call_next(ctx))
            except Exception as err:  # noqa: BLE001  re-raised below: the task group would wrap it
                failure = err  # in an ExceptionGroup, and an MCPError must reach the SDK as is
            finally:
                _CHANNEL.reset(token)
                channel.close()
        if channel is not None:  # what no sending task took: the per-call line, other threads'
            await _drain(ctx.session, ctx.request_id, channel.pending)
        if failure is not None:
            raise failure
        return result
    finally:
        if modern:
            _LISTENING.remove(floor)


def _requested(meta: Mapping[str, Any] | None) -> int | None:
    """The level a 2026-era request opted in to, as `allowed_log_levels` reads it."""
    level = meta.get(LOG_LEVEL_META_KEY) if meta else None
    return LEVELS.get(level) if isinstance(level, str) else None


async def _deliver(
    session: ServerSession,
    request_id: Any,
    pending: deque[_Entry],
    wakes: MemoryObjectReceiveStream[None],
) -> None:
    _CHANNEL.set(_UNHEARD)  # started from a request's task: its own records are not the client's
    async with wakes:
        async for _ in wakes:
            await _drain(session, request_id, pending)
    await _drain(session, request_id, pending)


async def _drain(session: ServerSession, request_id: Any, pending: deque[_Entry]) -> None:
    while pending:
        await _send(session, pending.popleft(), request_id)


async def _send(session: ServerSession, entry: _Entry, request_id: Any) -> None:
    try:
        await session.send_notification(_message(entry), related_request_id=request_id)
    except Exception:  # noqa: BLE001  a log line must never fail the call it reports on
        return


async def _timed(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext, channel: _Channel | None
) -> HandlerResult:
    started = time.perf_counter()
    outcome = "cancelled"
    try:
        result = await call_next(ctx)
        outcome = "error" if _is_error(result) else "ok"
    except Exception:
        outcome = "failed"
        raise
    finally:
        text = f"{_tool(ctx)}: {outcome} in {(time.perf_counter() - started) * 1000:.0f} ms"
        if channel is not None and channel.floor <= logging.INFO:  # sent as the call ends
            channel.pending.append(_Entry(logging.INFO, "info", CALLS.name, text))
        CALLS.debug("%s", text)
    return result


def _is_error(result: HandlerResult) -> bool:
    if isinstance(result, dict):
        return result.get("isError") is True
    return getattr(result, "is_error", None) is True


def _tool(ctx: ServerRequestContext[Any, Any]) -> str:
    name = cast(Any, ctx.params or {}).get("name")
    if isinstance(name, str) and name.isidentifier() and len(name) <= 64:
        return name
    return f"tool {name!r}"[:80]
