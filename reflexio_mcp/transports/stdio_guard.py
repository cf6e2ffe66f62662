"""Every request a client writes on stdin gets an answer, even one the SDK cannot read.

The SDK's stdio transport (mcp 2.3) reads each line with `jsonrpc_message_adapter`; a line
that fails (a lone surrogate escape, a 5000-digit number, 5000-deep nesting, plain garbage)
is dropped without a reply, so the client waits forever; invalid UTF-8 is silently replaced
by U+FFFD and stored. Until the SDK answers these itself, each line goes through
`checked_line` first (in stdio_pipes.py's reader, or through `guard_stdin()` in front of stdin
where the SDK's own transport serves): a line that would fail becomes a request for a reserved
method carrying the client's own id, which `answer_unreadable` answers with a JSON-RPC error
naming the problem.
A broken line whose id cannot be recovered (or a broken notification) is logged at WARNING.

The SDK also reads a request whose id is neither a string nor an integer (1.5, 2.0, true,
null, an object) as a notification, and so never answers it; and it cannot read a JSON-RPC
batch at all. A request whose id is an integer written as a float (2.0) is answered with an
error carrying that integer; one whose id no answer can carry is logged at WARNING. Each
request of a batch gets an error saying to send messages one per line.
"""

from __future__ import annotations

import io
import json
import logging
import math
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
        read = mcp_types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            return _unreadable(message, mcp_types.PARSE_ERROR, f"Parse error: {first['msg']}")
        parsed = _parsed(message)
        if isinstance(parsed, list):
            return _batch(cast(list[Any], parsed))
        return _unreadable(
            message,
            mcp_types.INVALID_REQUEST,
            f"Invalid request: not a JSON-RPC 2.0 message ({first['msg']})",
        )
    if isinstance(read, mcp_types.JSONRPCNotification) and b'"id"' in message:
        parsed = _parsed(message)
        if isinstance(parsed, dict) and "id" in parsed:
            fields = cast(dict[str, Any], parsed)
            if fields["id"] is None and str(fields.get("method", "")).startswith("notifications/"):
                return line  # a notification with a stray "id": null is still a notification
            return _with_bad_id(fields["id"])
    return line


def _parsed(message: bytes) -> Any:
    try:
        return json.loads(message)
    except (ValueError, RecursionError):
        return None


def _with_bad_id(request_id: Any) -> bytes:
    """A request the SDK took for a notification, its id being no string or integer."""
    if isinstance(request_id, float) and request_id.is_integer():
        return _error_request(
            int(request_id),
            mcp_types.INVALID_REQUEST,
            f"Invalid request: id {request_id!r} is not a string or an integer; send it as "
            f"{int(request_id)}",
        )
    logger.warning(
        "ignored a request whose id is %s: MCP ids are strings or integers, so no answer could "
        "reach the client",
        _kind(request_id),
    )
    return b""


def _batch(messages: list[Any]) -> bytes:
    """An error for each request of a JSON-RPC batch (MCP dropped batches in 2025-06-18)."""
    if not messages:
        logger.warning("ignored an empty batch from the client: nothing in it can be answered")
        return b""
    answers: list[bytes] = []
    for item in messages:
        request_id = _answerable_id(item)
        if request_id is not None:
            answers.append(
                _error_request(
                    request_id,
                    mcp_types.INVALID_REQUEST,
                    "Invalid request: JSON-RPC batches are not supported (MCP dropped them in "
                    "2025-06-18): send each message on a line of its own",
                )
            )
    if len(answers) < len(messages):
        logger.warning(
            "ignored %d of the %d messages of a batch: they cannot be answered (notifications, "
            "responses, or requests whose id is no string or integer); batches are not supported",
            len(messages) - len(answers),
            len(messages),
        )
    return b"".join(answers)


def _answerable_id(item: Any) -> int | str | None:
    if not isinstance(item, dict) or "method" not in item:
        return None
    request_id = cast(dict[str, Any], item).get("id")
    if isinstance(request_id, float) and request_id.is_integer():
        return int(request_id)
    return _usable_id(request_id)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, float):
        return "a number with a fraction" if math.isfinite(value) else "not a number"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _unreadable(message: bytes, code: int, problem: str) -> bytes:
    request_id = _request_id(message)
    if request_id is None:
        logger.warning("ignored a message from the client that cannot be read (%s)", problem)
        return b""
    return _error_request(request_id, code, problem)


def _error_request(request_id: int | str, code: int, problem: str) -> bytes:
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
    return _usable_id(cast(dict[str, Any], parsed).get("id"))


def _usable_id(request_id: Any) -> int | str | None:
    """`request_id` if the SDK can read it back and answer it."""
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
