"""Every request a client writes on stdin gets an answer, even one the SDK cannot read.

The SDK's stdio transport (mcp 2.3) reads each line with `jsonrpc_message_adapter`; a line
that fails (a lone surrogate escape, a 5000-digit number, 5000-deep nesting, plain garbage)
is dropped without a reply, so the client waits forever; invalid UTF-8 is silently replaced
by U+FFFD and stored. Until the SDK answers these itself, `guard_stdin()` puts a checker in
front of stdin: a line that would fail becomes a request for a reserved method carrying the
client's own id, which `answer_unreadable` answers with a JSON-RPC error naming the problem.
A broken line whose id cannot be recovered (or a broken notification) is logged at WARNING.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from typing import Any, BinaryIO, cast

import mcp_types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

logger = logging.getLogger(__name__)

UNREADABLE = "reflexio-mcp/unreadable-message"
"""The reserved method a broken request line is turned into."""
_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}(?![\d.eE])|"(?:[^"\\]|\\.){0,200}")')
_METHOD = re.compile(rb'"method"\s*:')


def guard_stdin() -> None:
    """Read stdin through the checker. Call before serving stdio: the SDK then reads
    `sys.stdin.buffer` as it is, since it is no longer file descriptor 0 itself."""
    checked = CheckedLines(sys.stdin.buffer)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(checked), encoding="utf-8")


class CheckedLines(io.RawIOBase):
    """The lines of `source`, each either as it was or replaced by `checked_line`."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            line = self._source.readline()
            if not line:
                return 0
            self._pending = checked_line(line)
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def checked_line(line: bytes) -> bytes:
    """`line` if the SDK can read it; else a request the server answers with an error, or
    nothing (logged) when no id can be recovered to answer."""
    message = line.rstrip(b"\r\n")
    if not message.strip():
        return line
    if b"\r" in message:
        # The SDK reads stdin with universal newlines: a lone CR (JSON whitespace, never raw
        # inside a JSON string) would split the message in two, both halves then dropped.
        message = message.replace(b"\r", b" ")
        line = message + b"\n"
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError as err:
        return _unreadable(
            message, mcp_types.PARSE_ERROR, f"Parse error: not valid UTF-8 at byte {err.start}"
        )
    try:
        mcp_types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            return _unreadable(message, mcp_types.PARSE_ERROR, f"Parse error: {first['msg']}")
        return _unreadable(
            message,
            mcp_types.INVALID_REQUEST,
            f"Invalid request: not a JSON-RPC 2.0 message ({first['msg']})",
        )
    return line


def _unreadable(message: bytes, code: int, problem: str) -> bytes:
    request_id = _request_id(message)
    if request_id is None:
        logger.warning("ignored a message from the client that cannot be read (%s)", problem)
        return b""
    request = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": UNREADABLE,
        "params": {"code": code, "problem": problem},
    }
    return json.dumps(request).encode() + b"\n"


def _request_id(message: bytes) -> int | str | None:
    """The id of a request (not a notification, not a response), if one can be found."""
    try:
        parsed: Any = json.loads(message)
    except (ValueError, RecursionError):
        if _METHOD.search(message) is None or (found := _ID.search(message)) is None:
            return None
        try:
            parsed = {"id": json.loads(found.group(1)), "method": ""}
        except ValueError:
            return None
    if not isinstance(parsed, dict) or "method" not in parsed:
        return None
    request_id = cast(dict[str, Any], parsed).get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    if isinstance(request_id, str):
        try:
            request_id.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no JSON the SDK reads can carry it back
            return None
    return request_id


async def answer_unreadable(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Middleware: the JSON-RPC error for a line `guard_stdin` could not pass on."""
    if ctx.method != UNREADABLE:
        return await call_next(ctx)
    params = dict(ctx.params or {})
    code = params.get("code")
    raise MCPError(
        code=code if isinstance(code, int) else mcp_types.INVALID_REQUEST,
        message=str(params.get("problem", "unreadable message")),
    )
