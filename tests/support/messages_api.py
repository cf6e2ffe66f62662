"""A local stand-in for the Anthropic Messages API, so the real Claude Code CLI runs offline.

Tests script the assistant's replies (`reply_text`, `reply_tool_use`); once the script is used
up each request gets `default_text`. Only agent-loop requests (those that list tools: the main
loop, a subagent, a compaction summary) take scripted replies; a side call such as the session
title (no tools, a JSON schema for its answer) gets a JSON object that fits its schema. Every
POST /v1/messages body is kept in `requests`; other calls (Claude Code 2.1.197 makes a `HEAD /`
each run) are answered harmlessly and listed in `other_calls`.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

DEFAULT_TEXT = "OK."
MODEL = "claude-standin"
JOIN_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """One scripted assistant message: text, a tool_use block, or text then a tool_use."""

    text: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None


class MessagesApi:
    """`with MessagesApi() as api:` serves on a free loopback port until the block ends."""

    def __init__(self, default_text: str = DEFAULT_TEXT) -> None:
        self.default_text = default_text
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._other_calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL for ANTHROPIC_BASE_URL."""
        if self._server is None:
            raise RuntimeError("MessagesApi.url: start the `with MessagesApi()` block first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of every POST /v1/messages so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def other_calls(self) -> list[tuple[str, str]]:
        """(method, path) of every call that was not POST /v1/messages."""
        with self._lock:
            return list(self._other_calls)

    def reply_text(self, text: str) -> None:
        with self._lock:
            self._script.append(Reply(text=text))

    def reply_tool_use(
        self, name: str, tool_input: dict[str, Any], text: str | None = None
    ) -> None:
        """A tool_use block (after a text block when `text` is given); Claude Code runs the
        tool and sends its tool_result in the next request."""
        with self._lock:
            self._script.append(Reply(text=text, tool_name=name, tool_input=tool_input))

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record `body` and return the (non-streamed) message it gets."""
        with self._lock:
            self._requests.append(body)
            if body.get("tools") and self._script:
                reply = self._script.popleft()
            elif (schema := _answer_schema(body)) is not None:
                reply = Reply(text=json.dumps(_instance_of(schema)))
            else:
                reply = Reply(text=self.default_text)
            message_id = f"msg_standin{next(self._ids):06d}"
        return message(reply, message_id, str(body.get("model") or MODEL))

    def note_call(self, method: str, path: str) -> None:
        with self._lock:
            self._other_calls.append((method, path))

    def __enter__(self) -> Self:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=JOIN_SECONDS)


def message(reply: Reply, message_id: str, model: str) -> dict[str, Any]:
    """The Messages API message for `reply`."""
    content: list[dict[str, Any]] = []
    if reply.text is not None or reply.tool_name is None:
        content.append({"type": "text", "text": reply.text or ""})
    stop_reason = "end_turn"
    if reply.tool_name is not None:
        tool_use_id = "toolu_" + message_id.removeprefix("msg_")
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id,
                "name": reply.tool_name,
                "input": reply.tool_input or {},
            }
        )
        stop_reason = "tool_use"
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def stream_events(answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """`answer` as the server-sent events of a streamed reply, one delta per block."""
    opening: dict[str, Any] = {**answer, "content": [], "stop_reason": None}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": opening})]
    for index, block in enumerate(cast("list[dict[str, Any]]", answer["content"])):
        if block["type"] == "text":
            empty: dict[str, Any] = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            empty = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            ("content_block_start", {"index": index, "content_block": empty}),
            ("content_block_delta", {"index": index, "delta": delta}),
            ("content_block_stop", {"index": index}),
        ]
    stopped = {"stop_reason": answer["stop_reason"], "stop_sequence": None}
    events += [
        ("message_delta", {"delta": stopped, "usage": answer["usage"]}),
        ("message_stop", {}),
    ]
    return [(name, {"type": name, **data}) for name, data in events]


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks in a recorded request's messages, oldest first."""
    found: list[dict[str, Any]] = []
    for turn in cast("list[dict[str, Any]]", body.get("messages") or []):
        content = turn.get("content")
        if isinstance(content, list):  # a string is plain text
            blocks = cast("list[dict[str, Any]]", content)
            found += [block for block in blocks if block.get("type") == "tool_result"]
    return found


def _handler_for(api: MessagesApi) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is for its own failures

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]  # Claude Code adds ?beta=true
            if path != "/v1/messages":
                api.note_call("POST", self.path)
                if path == "/v1/messages/count_tokens":
                    self._send_json(200, {"input_tokens": 10})
                else:
                    self._send_json(404, _error("not_found_error", f"no POST {path} here"))
                return
            try:
                body = json.loads(raw)
            except ValueError as error:
                self._send_json(400, _error("invalid_request_error", f"body: {error}"))
                return
            if not isinstance(body, dict):
                self._send_json(400, _error("invalid_request_error", "body: not an object"))
                return
            request = cast("dict[str, Any]", body)
            answer = api.answer(request)
            if request.get("stream"):
                self._send_stream(answer)
            else:
                self._send_json(200, answer)

        def do_GET(self) -> None:
            api.note_call("GET", self.path)
            self._send_json(404, _error("not_found_error", f"no GET {self.path} here"))

        def do_HEAD(self) -> None:
            api.note_call("HEAD", self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, answer: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")  # the stream ends with the connection
            self.end_headers()
            for name, data in stream_events(answer):
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
            self.close_connection = True

    return Handler


def _answer_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request wants its answer to follow (the session title's does)."""
    output = body.get("output_config")
    if not isinstance(output, dict):
        return None
    wanted = cast("dict[str, Any]", output).get("format")
    if not isinstance(wanted, dict) or cast("dict[str, Any]", wanted).get("type") != "json_schema":
        return None
    schema = cast("dict[str, Any]", wanted).get("schema")
    return cast("dict[str, Any]", schema) if isinstance(schema, dict) else {}


def _instance_of(schema: dict[str, Any]) -> Any:
    """A small value that fits the plain schemas Claude Code sends (objects of strings)."""
    kind = schema.get("type")
    if kind == "object":
        properties = cast("dict[str, dict[str, Any]]", schema.get("properties") or {})
        return {name: _instance_of(sub) for name, sub in properties.items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return 0
    return "Stand-in session"


def _error(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": f"Messages API stand-in: {text}"}}
