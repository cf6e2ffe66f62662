"""OpenAI Codex CLI session files (`~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl`) read into
exchanges: one per user prompt, with the assistant's text and the tools it called.

Checked against Codex's source (codex-rs/protocol/src/protocol.rs: RolloutLine, RolloutItem,
SessionMeta, EventMsg; protocol/src/models.rs: ResponseItem; rollout/src/recorder.rs and
policy.rs: what is written). Each line is a RolloutLine `{"timestamp", "type", "payload"}`,
type one of session_meta, response_item, event_msg, turn_context, compacted. Files written
before RolloutLine existed (core/src/rollout.rs, mid 2025) start with a bare SessionMeta
(`{"id", "timestamp", "instructions"}`, no "type") followed by bare ResponseItems.

Prompts come from `event_msg` user_message in RolloutLine files: Codex writes one per prompt
the user typed (some versions also one, of another `kind`, for the context it injects: left
out). Legacy files have no events, so there the user `response_item` messages are the prompts,
less the ones Codex injects (AGENTS.md, environment context). The assistant's text always
comes from `response_item` messages (the `agent_message` events repeat it), so nothing is
counted twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from reflexio_mcp.capture.conversation import (
    Exchange,
    Skipped,
    derived_id,
    session_id_of,
    tool_summary,
)
from reflexio_mcp.capture.json_lines import json_lines
from reflexio_mcp.core.limits import MAX_CONTENT_CHARS, MAX_TIMESTAMP
from reflexio_mcp.core.models import InteractionData, ToolUsed

SOURCE = "codex"


MAX_TOOLS = 1000
"""InteractionData.tools_used holds at most this many."""

INJECTED_PREFIXES = (
    "<user_instructions>",
    "<environment_context>",
    "# AGENTS.md instructions for ",
    "<INSTRUCTIONS>",
    "<user_shell_command>",
    "<collaboration_mode>",
    "<skill",
    "<turn_aborted>",
)
"""User-role messages Codex writes itself (protocol/src/instruction_markers.rs), not prompts."""

USER_MESSAGE_BEGIN = "## My request for Codex:"
"""The IDE extension puts its context before this line and the user's request after it."""

ROLLOUT_KINDS = frozenset(
    {"session_meta", "response_item", "event_msg", "turn_context", "compacted"}
)

RESPONSE_ITEM_KINDS = frozenset(
    {
        "message",
        "reasoning",
        "local_shell_call",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "web_search_call",
        "tool_search_call",
        "tool_search_output",
        "image_generation_call",
    }
)
"""The bare items a legacy file holds (a newer kind is simply not read)."""

_UUID_TAIL = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_EXIT_CODE = re.compile(r"^(?:Exit code:|Process exited with code) (-?\d{1,10})\s*$", re.MULTILINE)


def read_codex_session(path: Path, *, finished: bool) -> Iterator[Exchange | Skipped]:
    """The exchanges of one Codex session file, and the lines that could not be read.

    The file is read line by line. The last exchange is held back while it may still be
    running: it is yielded when another prompt follows it, when the file says its turn
    ended (task_complete or turn_aborted), or when `finished` is True. An unterminated last
    line is a line still being written unless `finished`, and is then left for the next read.
    """
    session = _Session(path)
    for line in json_lines(path, finished=finished):
        if line.problem is not None:
            yield Skipped(line.where, line.problem)
        else:
            yield from session.read(line.value, line.where)
    yield from session.end(finished=finished)


class _Shape(Exception):
    """A line of a known kind whose fields are not what Codex writes."""


@dataclass
class _Tool:
    name: str
    summary: str
    status: str = ""
    status_from_event: bool = False


@dataclass
class _Text:
    """Text joined from parts, kept to what InteractionData takes, with the total counted."""

    kept: list[str] = field(default_factory=list[str])
    kept_chars: int = 0
    total_chars: int = 0

    def add(self, part: str) -> None:
        separator = 2 if self.total_chars else 0
        self.total_chars += separator + len(part)
        room = MAX_CONTENT_CHARS - self.kept_chars
        if room <= 0:
            return
        piece = ("\n\n" if separator else "") + part
        self.kept.append(piece[:room])
        self.kept_chars += min(len(piece), room)

    def text(self) -> str:
        return _bounded("".join(self.kept), self.total_chars)


@dataclass
class _Open:
    """The exchange being read: its prompt and what followed it so far."""

    where: str
    ordinal: int
    stamp: str
    prompt: str
    prompt_at: int | None
    answer: _Text = field(default_factory=_Text)
    tools: list[_Tool] = field(default_factory=list[_Tool])
    calls: dict[str, int] = field(default_factory=dict[str, int])
    tools_left_out: int = 0
    answer_at: int | None = None
    complete: bool = False


class _Session:
    """What has been read of one file: its session, its format, and the open exchange."""

    def __init__(self, path: Path) -> None:
        self.path = path
        stem = path.name.removesuffix(".jsonl")
        tail = _UUID_TAIL.search(stem)
        self.codex_id = tail.group(0) if tail else stem
        self.cwd = ""
        self.cwd_from_context = ""
        self.version = ""
        self.meta_seen = False
        self.legacy: bool | None = None
        """None until a line shows the format: bare items (legacy) or RolloutLines."""
        self.session_id: str | None = None
        self.last_stamp = ""
        self.last_time: int | None = None
        self.prompts = 0
        self.open: _Open | None = None

    # Lines

    def read(self, value: object, where: str) -> Iterator[Exchange | Skipped]:
        if not isinstance(value, dict):
            yield Skipped(where, "not a JSON object")
            return
        line = cast(dict[str, Any], value)
        try:
            yield from self._line(line, where)
        except _Shape as error:
            yield Skipped(where, str(error))

    def _line(self, line: dict[str, Any], where: str) -> Iterator[Exchange | Skipped]:
        kind = line.get("type")
        if "payload" in line and isinstance(kind, str):
            if self.legacy is None:
                self.legacy = False
            self._stamp(line.get("timestamp"))
            payload = line["payload"]
            if kind == "session_meta":
                self._meta(_object(payload, "session_meta payload"))
            elif kind == "response_item":
                yield from self._item(_object(payload, "response_item payload"), where)
            elif kind == "event_msg":
                yield from self._event(_object(payload, "event_msg payload"), where)
            return
        if kind is None:
            if line.get("record_type") == "state":
                return
            if "id" in line and "timestamp" in line:
                if self.legacy is None:
                    self.legacy = True
                self._stamp(line.get("timestamp"))
                self._meta(line)
                return
            raise _Shape(
                "neither a rollout line (type, payload) nor a session meta (id, timestamp)"
            )
        if not isinstance(kind, str):
            raise _Shape("'type' is not a string")
        if kind in ROLLOUT_KINDS:
            raise _Shape(f"{kind} line without a 'payload'")
        if kind not in RESPONSE_ITEM_KINDS:
            return
        if self.legacy is None:
            self.legacy = True
        yield from self._item(line, where)

    def _stamp(self, value: object) -> None:
        if not isinstance(value, str):
            return
        at = _unix_seconds(value)
        if at is not None:
            self.last_stamp = value
            self.last_time = at

    def _meta(self, meta: dict[str, Any]) -> None:
        if self.meta_seen:
            return  # later ones are copied from the session this one was forked from
        codex_id = meta.get("id")
        if not isinstance(codex_id, str) or not codex_id.strip():
            raise _Shape("session meta without an 'id' string")
        self.meta_seen = True
        self.codex_id = codex_id[:200]
        cwd = meta.get("cwd")
        if isinstance(cwd, str):
            self.cwd = cwd
        version = meta.get("cli_version")
        if isinstance(version, str):
            self.version = version[:1000]

    # Response items

    def _item(self, item: dict[str, Any], where: str) -> Iterator[Exchange | Skipped]:
        kind = item.get("type")
        if kind == "message":
            yield from self._message(item, where)
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            self._call(item)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._output(item)
        elif kind in ("web_search_call", "tool_search_call", "image_generation_call"):
            self._hosted_call(item)
        elif kind == "tool_search_output":
            call_id = item.get("call_id")
            if isinstance(call_id, str):
                self._set_status(call_id, _status_word(item.get("status")), from_event=False)

    def _message(self, item: dict[str, Any], where: str) -> Iterator[Exchange | Skipped]:
        role = item.get("role")
        if not isinstance(role, str):
            raise _Shape("message without a 'role' string")
        content = item.get("content")
        text = _content_text(content)
        if role == "assistant":
            if self.open is not None and text.strip():
                self._answered()
                self.open.answer.add(text)
        elif role == "user":
            if _injected(text):
                self._context(text)
            elif self.legacy:
                yield from self._prompt(text, where, images=_images_in(content))

    def _call(self, item: dict[str, Any]) -> None:
        kind = item["type"]
        call_id = item.get("call_id")
        if kind == "local_shell_call":
            name = "local_shell"
            summary = _summary(_shell_action(item.get("action")))
            if not isinstance(call_id, str):
                call_id = item.get("id")
        else:
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise _Shape(f"{kind} without a 'name' string")
            namespace = item.get("namespace")
            if isinstance(namespace, str):
                name = namespace + name
            arguments = item.get("arguments" if kind == "function_call" else "input")
            summary = _summary(_parsed_arguments(arguments))
        tool = _Tool(name[:1000], summary)
        if kind == "local_shell_call" and item.get("status") == "incomplete":
            tool.status = "error"
        self._add_tool(tool, call_id if isinstance(call_id, str) else None)

    def _hosted_call(self, item: dict[str, Any]) -> None:
        kind = cast(str, item["type"])
        name = kind.removesuffix("_call")
        if kind == "web_search_call":
            details = item.get("action")
        elif kind == "tool_search_call":
            details = item.get("arguments")
        else:
            details = item.get("revised_prompt")
        tool = _Tool(name, _summary(details if details is not None else ""))
        tool.status = _status_word(item.get("status"))
        call_id = item.get("call_id")
        self._add_tool(tool, call_id if isinstance(call_id, str) else None)

    def _add_tool(self, tool: _Tool, call_id: str | None) -> None:
        exchange = self.open
        if exchange is None:
            return
        self._answered()
        if len(exchange.tools) >= MAX_TOOLS:
            exchange.tools_left_out += 1
            return
        if call_id:
            exchange.calls[call_id] = len(exchange.tools)
        exchange.tools.append(tool)

    def _output(self, item: dict[str, Any]) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise _Shape(f"{item['type']} without a 'call_id' string")
        self._set_status(call_id, _output_status(item.get("output")), from_event=False)

    def _set_status(self, call_id: str, status: str, *, from_event: bool) -> None:
        exchange = self.open
        if exchange is None or not status or call_id not in exchange.calls:
            return
        tool = exchange.tools[exchange.calls[call_id]]
        if from_event or not tool.status_from_event:
            tool.status = status
            tool.status_from_event = from_event

    # Events

    def _event(self, event: dict[str, Any], where: str) -> Iterator[Exchange | Skipped]:
        kind = event.get("type")
        if kind == "user_message":
            message = event.get("message")
            if not isinstance(message, str):
                raise _Shape("user_message without a 'message' string")
            if event.get("kind") not in (None, "plain") or _injected(message):
                self._context(message)
                return
            images = event.get("images")
            count = len(cast(list[Any], images)) if isinstance(images, list) else 0
            yield from self._prompt(message, where, images=count)
        elif kind in ("task_complete", "turn_complete", "turn_aborted"):
            if self.open is not None:
                self.open.complete = True
        elif kind == "mcp_tool_call_end":
            call_id = event.get("call_id")
            if isinstance(call_id, str):
                self._set_status(call_id, _mcp_status(event.get("result")), from_event=True)
        elif kind == "patch_apply_end":
            call_id, success = event.get("call_id"), event.get("success")
            if isinstance(call_id, str) and isinstance(success, bool):
                self._set_status(call_id, "ok" if success else "error", from_event=True)
        elif kind == "exec_command_end":
            call_id, code = event.get("call_id"), event.get("exit_code")
            if isinstance(call_id, str) and _is_int(code):
                self._set_status(call_id, "ok" if code == 0 else "error", from_event=True)

    # Exchanges

    def _prompt(self, text: str, where: str, *, images: int = 0) -> Iterator[Exchange | Skipped]:
        if USER_MESSAGE_BEGIN in text:
            text = text.split(USER_MESSAGE_BEGIN, 1)[1].strip()
        if not text.strip():
            if not images:
                return
            text = f"[{images} image{'s' if images > 1 else ''} attached]"
        yield from self._close()
        if self.session_id is None:
            # Fixed at the first prompt (a later session meta is ignored): one file, one id.
            self.session_id = session_id_of(
                SOURCE, self.cwd or self.cwd_from_context, self.codex_id
            )
            self.meta_seen = True
        self.open = _Open(
            where=where,
            ordinal=self.prompts,
            stamp=self.last_stamp,
            prompt=_bounded(text, len(text)),
            prompt_at=self.last_time,
        )
        self.prompts += 1

    def _answered(self) -> None:
        if self.open is not None and self.open.answer_at is None:
            self.open.answer_at = self.last_time

    def _context(self, text: str) -> None:
        if not self.cwd_from_context:
            found = re.search(r"<cwd>([^<\n]{1,4096})</cwd>", text[:20_000])
            if found:
                self.cwd_from_context = found.group(1).strip()

    def _close(self) -> Iterator[Exchange | Skipped]:
        exchange, self.open = self.open, None
        if exchange is not None:
            yield self._exchange(exchange)

    def end(self, *, finished: bool) -> Iterator[Exchange | Skipped]:
        if self.open is not None and (finished or self.open.complete):
            yield from self._close()

    def _exchange(self, exchange: _Open) -> Exchange | Skipped:
        try:
            turns = [
                InteractionData(role="user", content=exchange.prompt, created_at=exchange.prompt_at)
            ]
            if exchange.tools_left_out:
                exchange.answer.add(
                    f"[… {exchange.tools_left_out} more tool calls, not listed: a turn lists "
                    f"at most {MAX_TOOLS}]"
                )
            answer = exchange.answer.text()
            tools = [
                ToolUsed(tool_name=t.name, tool_data={"input": t.summary}, status=t.status)
                for t in exchange.tools
            ]
            if answer.strip() or tools:
                turns.append(
                    InteractionData(
                        role="assistant",
                        content=answer,
                        tools_used=tools,
                        created_at=exchange.answer_at,
                    )
                )
        except ValidationError as error:
            return Skipped(exchange.where, f"exchange not stored: {error}")
        session = cast(str, self.session_id)
        return Exchange(
            request_id=derived_id(SOURCE, self.codex_id, str(exchange.ordinal), exchange.stamp),
            session_id=session,
            turns=turns,
            source=SOURCE,
            agent_version=self.version,
        )


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Shape(f"{what} is not an object")
    return cast(dict[str, Any], value)


def _summary(value: object) -> str:
    try:
        return tool_summary(value)
    except RecursionError:  # JSON nested deeper than json.dumps goes
        return "[input nested too deeply to show]"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unix_seconds(stamp: str) -> int | None:
    try:
        moment = datetime.fromisoformat(stamp.strip())
        if moment.tzinfo is None:
            return None
        seconds = int(moment.timestamp())
    except (ValueError, OverflowError):
        return None
    return seconds if 0 <= seconds <= MAX_TIMESTAMP else None


def _bounded(text: str, total: int) -> str:
    """The text cut to MAX_CONTENT_CHARS with a marker saying how long it was."""
    if total <= MAX_CONTENT_CHARS:
        return text
    marker = f"\n[… cut: {total:,} characters in all]"
    return text[: MAX_CONTENT_CHARS - len(marker)] + marker


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Shape("message 'content' is not a list")
    parts: list[str] = []
    for piece in cast(list[Any], content):
        if isinstance(piece, dict):
            text = cast(dict[str, Any], piece).get("text")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def _images_in(content: object) -> int:
    if not isinstance(content, list):
        return 0
    pieces = cast(list[Any], content)
    return sum(
        1
        for p in pieces
        if isinstance(p, dict) and cast(dict[str, Any], p).get("type") == "input_image"
    )


def _injected(text: str) -> bool:
    return text.lstrip().startswith(INJECTED_PREFIXES)


def _parsed_arguments(arguments: object) -> object:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments
    return arguments if arguments is not None else ""


def _shell_action(action: object) -> object:
    """The command line of a local_shell_call's exec action, else the action as it is."""
    if action is None:
        return ""
    command = cast(dict[str, Any], action).get("command") if isinstance(action, dict) else None
    if isinstance(command, list) and all(isinstance(c, str) for c in cast(list[Any], command)):
        return " ".join(cast(list[str], command))
    return cast(object, action)


def _status_word(status: object) -> str:
    if status == "completed":
        return "ok"
    if status in ("failed", "incomplete"):
        return "error"
    return ""


def _output_status(output: object, *, nested: bool = False) -> str:
    """ok or error when the output says (an exit code, a success flag), else ""."""
    if isinstance(output, dict):
        body = cast(dict[str, Any], output)
        success = body.get("success")
        if isinstance(success, bool):
            return "ok" if success else "error"
        return "" if nested else _output_status(body.get("content"), nested=True)
    if isinstance(output, list):
        return _output_status(_content_text(cast(list[Any], output)))
    if not isinstance(output, str):
        return ""
    head = output[:4000]
    if head.lstrip().startswith("{"):
        try:
            parsed: object = json.loads(output)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            metadata = cast(dict[str, Any], parsed).get("metadata")
            if isinstance(metadata, dict):
                code = cast(dict[str, Any], metadata).get("exit_code")
                if _is_int(code):
                    return "ok" if code == 0 else "error"
            return ""
    header = head.split("\nOutput:", 1)[0]
    found = _EXIT_CODE.search(header)
    if found:
        return "ok" if int(found.group(1)) == 0 else "error"
    return ""


def _mcp_status(result: object) -> str:
    if not isinstance(result, dict):
        return ""
    outcome = cast(dict[str, Any], result)
    if "Err" in outcome:
        return "error"
    done = outcome.get("Ok")
    if isinstance(done, dict):
        flagged = cast(dict[str, Any], done)
        is_error = flagged.get("isError", flagged.get("is_error"))
        return "error" if is_error is True else "ok"
    return ""
