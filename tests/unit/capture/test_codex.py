"""Codex CLI session files read into exchanges.

The fixture lines are written the way Codex writes them, per its source (openai/codex):
- a line is a RolloutLine `{"timestamp", "type", "payload"}` with RolloutItem's serde tags
  (codex-rs/protocol/src/protocol.rs: RolloutLine, RolloutItem, SessionMetaLine, EventMsg);
- payloads of response_item are ResponseItems (codex-rs/protocol/src/models.rs), a
  function_call_output's output a plain string (FunctionCallOutputPayload's Serialize);
- shell outputs are formatted by core/src/tools/mod.rs (format_exec_output_for_model_structured
  and _freeform) and core/src/tools/handlers/unified_exec.rs (format_response);
- the session meta line and the user_message event follow codex-rs/app-server/tests/common/
  rollout.rs (create_fake_rollout) and rollout/src/recorder.rs's tests (write_session_file);
- legacy files (core/src/rollout.rs at 89a151f5) start with a bare SessionMeta and hold bare
  ResponseItems and `{"record_type": "state"}` lines.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflexio_mcp.capture import json_lines
from reflexio_mcp.capture.codex import read_codex_session
from reflexio_mcp.capture.conversation import Exchange, Skipped, session_id_of
from reflexio_mcp.capture.formats import kind_of
from reflexio_mcp.core.limits import MAX_CONTENT_CHARS

SESSION = "5973b6c0-94b8-487b-a530-2aeb6098ae0e"
CWD = "/home/dev/shop"
FILE = f"rollout-2025-10-01T10-00-00-{SESSION}.jsonl"

Line = dict[str, Any]


def at(second: int) -> str:
    return f"2025-10-01T10:{second // 60:02d}:{second % 60:02d}.000Z"


T0 = 1759312800
"""2025-10-01T10:00:00Z"""


def rollout(kind: str, payload: object, second: int = 0) -> Line:
    return {"timestamp": at(second), "type": kind, "payload": payload}


def meta(second: int = 0, **extra: Any) -> Line:
    payload: dict[str, Any] = {
        "id": SESSION,
        "timestamp": at(second),
        "cwd": CWD,
        "originator": "codex_cli_rs",
        "cli_version": "0.46.0",
        "instructions": None,
        "source": "cli",
        "model_provider": "openai",
        "git": {"commit_hash": "abc123", "branch": "main"},
    }
    payload.update(extra)
    return rollout("session_meta", payload, second)


def user_item(text: str, second: int) -> Line:
    content = [{"type": "input_text", "text": text}]
    return rollout("response_item", {"type": "message", "role": "user", "content": content}, second)


def user_event(text: str, second: int, **extra: Any) -> Line:
    return rollout("event_msg", {"type": "user_message", "message": text, **extra}, second)


def prompt(text: str, second: int) -> list[Line]:
    """A prompt as Codex records it: the message in the history, then the event."""
    return [user_item(text, second), user_event(text, second)]


def assistant(text: str, second: int) -> list[Line]:
    """An answer as Codex records it: the message, then the agent_message event repeating it."""
    content = [{"type": "output_text", "text": text}]
    item = {"type": "message", "role": "assistant", "content": content}
    event = {"type": "agent_message", "message": text}
    return [rollout("response_item", item, second), rollout("event_msg", event, second)]


def call(name: str, arguments: dict[str, Any], call_id: str, second: int) -> Line:
    item = {
        "type": "function_call",
        "name": name,
        "arguments": json.dumps(arguments),
        "call_id": call_id,
    }
    return rollout("response_item", item, second)


def output(call_id: str, text: str, second: int) -> Line:
    item = {"type": "function_call_output", "call_id": call_id, "output": text}
    return rollout("response_item", item, second)


def task_complete(second: int) -> Line:
    return rollout("event_msg", {"type": "task_complete", "last_agent_message": None}, second)


def context_lines() -> list[Line]:
    """What Codex puts before the first prompt: not the user's words."""
    return [
        rollout(
            "response_item",
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "<permissions instructions>"}],
            },
        ),
        user_item(
            f"# AGENTS.md instructions for {CWD}\n\n<INSTRUCTIONS>\nbe nice\n</INSTRUCTIONS>", 0
        ),
        user_item(f"<environment_context>\n  <cwd>{CWD}</cwd>\n</environment_context>", 0),
        rollout(
            "turn_context",
            {
                "cwd": CWD,
                "approval_policy": "on-request",
                "model": "gpt-5-codex",
                "summary": "auto",
            },
        ),
    ]


def write(tmp_path: Path, lines: Iterable[Line | str], name: str = FILE) -> Path:
    path = tmp_path / name
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def read(path: Path, *, finished: bool = True) -> list[Exchange | Skipped]:
    return list(read_codex_session(path, finished=finished))


def exchanges(items: list[Exchange | Skipped]) -> list[Exchange]:
    return [i for i in items if isinstance(i, Exchange)]


def skipped(items: list[Exchange | Skipped]) -> list[Skipped]:
    return [i for i in items if isinstance(i, Skipped)]


def test_a_text_session_is_one_exchange_per_prompt(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            *context_lines(),
            *prompt("What does the cart do?", 1),
            rollout(
                "response_item",
                {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "**Thinking**"}],
                    "encrypted_content": "gAAAA",
                },
                2,
            ),
            rollout("event_msg", {"type": "agent_reasoning", "text": "**Thinking**"}, 2),
            *assistant("It keeps the items.", 3),
            *assistant("And their prices.", 4),
            rollout("event_msg", {"type": "token_count", "info": None, "rate_limits": None}, 4),
            task_complete(5),
            *prompt("Thanks", 10),
            *assistant("You're welcome.", 11),
            task_complete(12),
        ],
    )

    items = read(path, finished=False)

    assert kind_of(path) == "codex"  # what `import` reads it as
    assert skipped(items) == []
    first, second = exchanges(items)
    assert [t.role for t in first.turns] == ["user", "assistant"]
    assert first.turns[0].content == "What does the cart do?"
    assert first.turns[0].created_at == T0 + 1
    assert first.turns[1].content == "It keeps the items.\n\nAnd their prices."
    assert first.turns[1].created_at == T0 + 3
    assert first.turns[1].tools_used == []
    assert second.turns[0].content == "Thanks"
    assert second.turns[1].content == "You're welcome."
    assert first.session_id == second.session_id == session_id_of("codex", CWD, SESSION)
    assert first.source == "codex"
    assert first.agent_version == "0.46.0"
    assert first.request_id != second.request_id
    assert first.request_id.startswith("codex-")


def test_tool_calls_are_listed_with_their_status(tmp_path: Path) -> None:
    structured_ok = json.dumps(
        {"output": "cart.py\n", "metadata": {"exit_code": 0, "duration_seconds": 0.1}}
    )
    freeform_failed = "Exit code: 1\nWall time: 0.2 seconds\nOutput:\nno tests ran"
    unified_ok = "Chunk ID: 1a2b\nWall time: 0.0100 seconds\nProcess exited with code 0\nOutput:\n"
    unified_running = "Wall time: 10.0000 seconds\nProcess running with session ID 3\nOutput:\n"
    patch = "*** Begin Patch\n*** Update File: cart.py\n@@\n-a\n+b\n*** End Patch"
    path = write(
        tmp_path,
        [
            meta(),
            *prompt("Fix the cart", 1),
            *assistant("Looking.", 2),
            call("shell", {"command": ["bash", "-lc", "ls"], "workdir": CWD}, "call_1", 3),
            output("call_1", structured_ok, 4),
            call("shell_command", {"command": "pytest -q"}, "call_2", 5),
            output("call_2", freeform_failed, 6),
            call("exec_command", {"cmd": "make"}, "call_3", 7),
            output("call_3", unified_ok, 8),
            call("exec_command", {"cmd": "npm run dev"}, "call_4", 9),
            output("call_4", unified_running, 10),
            rollout(
                "response_item",
                {
                    "type": "custom_tool_call",
                    "status": "completed",
                    "call_id": "call_5",
                    "name": "apply_patch",
                    "input": patch,
                },
                11,
            ),
            rollout(
                "response_item",
                {"type": "custom_tool_call_output", "call_id": "call_5", "output": structured_ok},
                12,
            ),
            rollout(
                "event_msg",
                {
                    "type": "patch_apply_end",
                    "call_id": "call_5",
                    "stdout": "",
                    "stderr": "",
                    "success": False,
                    "changes": {},
                },
                12,
            ),
            rollout(
                "response_item",
                {
                    "type": "local_shell_call",
                    "call_id": "call_6",
                    "status": "completed",
                    "action": {
                        "type": "exec",
                        "command": ["ls", "-la"],
                        "timeout_ms": None,
                        "working_directory": None,
                        "env": None,
                        "user": None,
                    },
                },
                13,
            ),
            output("call_6", json.dumps({"output": "", "metadata": {"exit_code": 2}}), 14),
            call("docs__search", {"query": "cart"}, "call_7", 15),
            output("call_7", "err: boom", 16),
            rollout(
                "event_msg",
                {
                    "type": "mcp_tool_call_end",
                    "call_id": "call_7",
                    "invocation": {"server": "docs", "tool": "search", "arguments": None},
                    "duration": {"secs": 0, "nanos": 5},
                    "result": {"Err": "boom"},
                },
                16,
            ),
            call("update_plan", {"plan": [{"step": "fix", "status": "in_progress"}]}, "call_8", 17),
            output("call_8", "Plan updated", 18),
            rollout(
                "response_item",
                {
                    "type": "web_search_call",
                    "status": "completed",
                    "action": {"type": "search", "query": "cart totals"},
                },
                19,
            ),
            *assistant("Fixed.", 20),
            task_complete(21),
        ],
    )

    (exchange,) = exchanges(read(path))

    answer = exchange.turns[1]
    assert answer.content == "Looking.\n\nFixed."
    assert answer.created_at == T0 + 2
    tools = [(t.tool_name, t.tool_data["input"], t.status) for t in answer.tools_used]
    assert tools == [
        ("shell", '{"command":["bash","-lc","ls"],"workdir":"/home/dev/shop"}', "ok"),
        ("shell_command", '{"command":"pytest -q"}', "error"),
        ("exec_command", '{"cmd":"make"}', "ok"),
        ("exec_command", '{"cmd":"npm run dev"}', ""),
        ("apply_patch", " ".join(patch.split()), "error"),
        ("local_shell", "ls -la", "error"),
        ("docs__search", '{"query":"cart"}', "error"),
        ("update_plan", '{"plan":[{"step":"fix","status":"in_progress"}]}', ""),
        ("web_search", '{"type":"search","query":"cart totals"}', "ok"),
    ]


def test_an_exec_command_end_event_tells_the_status(tmp_path: Path) -> None:
    # persisted in "extended" mode only (rollout recorder's sanitize_rollout_item_for_persistence)
    running = "Wall time: 10.0000 seconds\nProcess running with session ID 3\nOutput:\n"
    end = {"type": "exec_command_end", "call_id": "c1", "exit_code": 3, "aggregated_output": ""}
    path = write(
        tmp_path,
        [
            meta(),
            *prompt("Build", 1),
            call("exec_command", {"cmd": "make"}, "c1", 2),
            rollout("event_msg", end, 3),
            output("c1", running, 4),
            task_complete(5),
        ],
    )

    (exchange,) = exchanges(read(path))

    assert [t.status for t in exchange.turns[1].tools_used] == ["error"]


def test_an_answer_of_tools_only_has_empty_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            *prompt("List files", 1),
            call("shell", {"command": ["ls"]}, "c", 2),
            task_complete(3),
        ],
    )

    (exchange,) = exchanges(read(path))

    assert exchange.turns[1].content == ""
    assert [t.tool_name for t in exchange.turns[1].tools_used] == ["shell"]


def test_instructions_environment_and_developer_messages_are_left_out(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            *context_lines(),
            user_event(
                "<user_instructions>\nrules\n</user_instructions>", 0, kind="user_instructions"
            ),
            user_event(
                "<environment_context>\n</environment_context>", 0, kind="environment_context"
            ),
            *prompt("Real question", 1),
            *assistant("Real answer", 2),
            user_item("<user_shell_command>\nls\n</user_shell_command>", 3),
            task_complete(4),
        ],
    )

    (exchange,) = exchanges(read(path))

    assert [t.content for t in exchange.turns] == ["Real question", "Real answer"]


def test_an_answer_without_text_or_tools_is_left_out(tmp_path: Path) -> None:
    path = write(tmp_path, [meta(), *prompt("Hello?", 1), task_complete(2)])

    (exchange,) = exchanges(read(path))

    assert [t.role for t in exchange.turns] == ["user"]


def test_the_ide_context_before_the_request_is_left_out(tmp_path: Path) -> None:
    text = (
        "# Context from my IDE setup:\n\n## Open tabs:\n- cart.py\n\n## My request for Codex:\nWhy?"
    )
    path = write(tmp_path, [meta(), *prompt(text, 1), *assistant("Because.", 2), task_complete(3)])

    (exchange,) = exchanges(read(path))

    assert exchange.turns[0].content == "Why?"


def test_damaged_lines_are_skipped_and_counted_and_the_rest_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            meta(),
            *prompt("First", 1),
            '{"timestamp": "2025-10-01T10:00:02.000Z", "type": "response_item", "payl',
            "[1, 2, 3]",
            {"timestamp": at(2), "type": "event_msg"},
            rollout("response_item", {"type": "message", "role": "assistant", "content": 7}, 2),
            rollout("event_msg", "not an object", 2),
            rollout("response_item", {"type": "function_call_output", "output": "x"}, 2),
            *assistant("Answer", 3),
            task_complete(4),
            *prompt("Second", 5),
            *assistant("Again", 6),
            task_complete(7),
        ],
    )

    items = read(path)

    lost = skipped(items)
    assert [s.where for s in lost] == [f"{path}:{n}" for n in (4, 5, 6, 7, 8, 9)]
    assert lost[0].reason.startswith("not JSON")
    assert lost[1].reason == "not a JSON object"
    assert [[t.content for t in e.turns] for e in exchanges(items)] == [
        ["First", "Answer"],
        ["Second", "Again"],
    ]


def test_the_last_exchange_is_held_back_until_it_is_complete(tmp_path: Path) -> None:
    lines = [meta(), *prompt("One", 1), *assistant("Done one", 2), *prompt("Two", 3)]
    lines += assistant("Working on two", 4)
    path = write(tmp_path, lines)

    running = exchanges(read(path, finished=False))
    assert [e.turns[0].content for e in running] == ["One"]

    ended = exchanges(read(path, finished=True))
    assert [e.turns[0].content for e in ended] == ["One", "Two"]
    assert ended[0].request_id == running[0].request_id

    write(tmp_path, [*lines, task_complete(5)])
    assert len(exchanges(read(path, finished=False))) == 2

    aborted = {"type": "turn_aborted", "reason": "interrupted"}
    write(tmp_path, [*lines, rollout("event_msg", aborted, 5)])
    assert len(exchanges(read(path, finished=False))) == 2


def test_a_line_still_being_written_is_left_for_the_next_read(tmp_path: Path) -> None:
    lines = [meta(), *prompt("One", 1), *assistant("Done", 2)]
    path = write(tmp_path, lines)
    with path.open("a", encoding="utf-8") as out:
        out.write('{"timestamp":"2025-10-01T10:00:03.000Z","type":"event_msg","payload":{"ty')

    assert read(path, finished=False) == []
    items = read(path, finished=True)
    assert len(exchanges(items)) == 1
    assert [s.where for s in skipped(items)] == [f"{path}:6"]


def test_request_ids_are_stable_across_reads_and_appends(tmp_path: Path) -> None:
    lines = [meta(), *prompt("One", 1), *assistant("A", 2), task_complete(3)]
    lines += [*prompt("Two", 4), *assistant("B", 5), task_complete(6)]
    path = write(tmp_path, lines)

    first = [e.request_id for e in exchanges(read(path))]
    again = [e.request_id for e in exchanges(read(path))]
    write(tmp_path, [*lines, *prompt("Three", 7), *assistant("C", 8), task_complete(9)])
    grown = [e.request_id for e in exchanges(read(path))]

    assert first == again == grown[:2]
    assert len(set(grown)) == 3


def test_the_same_prompt_twice_is_two_exchanges(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [meta(), *prompt("again", 1), *assistant("A", 1), *prompt("again", 1), *assistant("B", 1)],
    )

    ids = [e.request_id for e in exchanges(read(path))]

    assert len(ids) == len(set(ids)) == 2


def test_a_file_without_a_session_meta_uses_the_id_in_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, ["{broken", *prompt("Hi", 1), *assistant("Hello", 2)])

    (exchange,) = exchanges(read(path))

    assert exchange.session_id == session_id_of("codex", "", SESSION)
    assert exchange.agent_version == ""


def test_a_forked_file_keeps_its_own_session(tmp_path: Path) -> None:
    other = "11111111-2222-4333-8444-555555555555"
    path = write(
        tmp_path,
        [meta(), meta(1, id=other, cwd="/elsewhere"), *prompt("Hi", 2), *assistant("Hello", 3)],
    )

    (exchange,) = exchanges(read(path))

    assert exchange.session_id == session_id_of("codex", CWD, SESSION)


def test_legacy_files_read_their_bare_items(tmp_path: Path) -> None:
    legacy = [
        {"id": SESSION, "timestamp": "2025-05-07T17:24:21.123Z", "instructions": "be nice"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": f"<environment_context>\n<cwd>{CWD}</cwd>\n</environment_context>",
                }
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix it"}]},
        {"record_type": "state", "previous_response_id": "resp_1"},
        {
            "type": "function_call",
            "name": "shell",
            "arguments": '{"command":["ls"]}',
            "call_id": "call_1",
        },
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": '{"output":"a\\n","metadata":{"exit_code":0,"duration_seconds":0.0}}',
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Fixed"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ]
    path = write(tmp_path, legacy, name=f"rollout-2025-05-07T17-24-21-{SESSION}.jsonl")

    held = exchanges(read(path, finished=False))
    items = read(path, finished=True)

    assert kind_of(path) == "codex"  # what `import` reads it as
    assert skipped(items) == []
    first, second = exchanges(items)
    assert [e.request_id for e in held] == [first.request_id]
    assert [t.content for t in first.turns] == ["Fix it", "Fixed"]
    assert first.turns[0].created_at == 1746638661
    assert [(t.tool_name, t.status) for t in first.turns[1].tools_used] == [("shell", "ok")]
    assert [t.content for t in second.turns] == ["Thanks"]
    assert first.session_id == session_id_of("codex", CWD, SESSION)


def test_long_text_is_cut_with_a_marker(tmp_path: Path) -> None:
    long_prompt = "p" * (MAX_CONTENT_CHARS + 10)
    answers = [assistant("a" * 400_000, 2)[0] for _ in range(4)]
    path = write(tmp_path, [meta(), *prompt(long_prompt, 1), *answers, task_complete(3)])

    (exchange,) = exchanges(read(path))

    asked, answered = exchange.turns
    assert len(asked.content) == MAX_CONTENT_CHARS
    assert asked.content.endswith(f"[… cut: {MAX_CONTENT_CHARS + 10:,} characters in all]")
    assert len(answered.content) == MAX_CONTENT_CHARS
    assert answered.content.endswith(f"[… cut: {4 * 400_000 + 3 * 2:,} characters in all]")


def test_at_most_a_thousand_tools_are_listed(tmp_path: Path) -> None:
    calls = [call("shell", {"command": ["true"]}, f"c{n}", 2) for n in range(1005)]
    path = write(tmp_path, [meta(), *prompt("Loop", 1), *calls, task_complete(3)])

    (exchange,) = exchanges(read(path))

    answer = exchange.turns[1]
    assert len(answer.tools_used) == 1000
    assert "5 more tool calls, not listed" in answer.content


def test_an_image_only_prompt_says_so(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [meta(), user_event("", 1, images=["data:image/png;base64,AAAA"]), *assistant("A cat", 2)],
    )

    (exchange,) = exchanges(read(path))

    assert exchange.turns[0].content == "[1 image attached]"


def test_a_line_too_long_is_skipped_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_lines, "MAX_LINE_BYTES", 1000)
    path = write(
        tmp_path, [meta(), *prompt("Hi", 1), *assistant("x" * 5000, 2), *assistant("ok", 3)]
    )

    items = read(path)

    # the long answer and the agent_message event repeating it
    assert [s.where for s in skipped(items)] == [f"{path}:4", f"{path}:5"]
    assert skipped(items)[0].reason == "a line longer than 0 MiB"
    assert exchanges(items)[0].turns[1].content == "ok"


def test_json_nested_too_deeply_is_skipped_or_shown_raw(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    item = {"type": "function_call", "name": "shell", "arguments": deep, "call_id": "c"}
    path = write(
        tmp_path,
        [meta(), deep, *prompt("Hi", 1), rollout("response_item", item, 2), task_complete(3)],
    )

    items = read(path)

    assert [s.where for s in skipped(items)] == [f"{path}:2"]
    (exchange,) = exchanges(items)
    (tool,) = exchange.turns[1].tools_used
    assert tool.tool_data["input"].startswith("[[[")
    assert len(tool.tool_data["input"]) <= 300


def test_a_large_file_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / FILE
    big_output = json.dumps({"output": "y" * 4000, "metadata": {"exit_code": 0}})
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(meta()) + "\n")
        for n in range(3000):
            block = [
                *prompt(f"prompt {n}", 1),
                call("shell", {"command": ["cat", f"f{n}"]}, f"c{n}", 2),
                output(f"c{n}", big_output, 3),
                *assistant("z" * 2000, 4),
                task_complete(5),
            ]
            out.write("".join(json.dumps(line) + "\n" for line in block))
    size = path.stat().st_size
    assert size > 25 * 2**20

    tracemalloc.start()
    try:
        count = sum(
            1 for item in read_codex_session(path, finished=True) if isinstance(item, Exchange)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 3000
    assert peak < 2**20, f"peak {peak} bytes reading a {size}-byte file"


JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KINDS = st.sampled_from(
    ["session_meta", "response_item", "event_msg", "turn_context", "compacted", "message", "x"]
)
PAYLOAD_KINDS = st.sampled_from(
    [
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "web_search_call",
        "tool_search_call",
        "tool_search_output",
        "image_generation_call",
        "reasoning",
        "user_message",
        "agent_message",
        "task_complete",
        "turn_aborted",
        "mcp_tool_call_end",
        "patch_apply_end",
        "exec_command_end",
    ]
)
FIELDS = st.sampled_from(
    [
        "role",
        "content",
        "name",
        "arguments",
        "input",
        "call_id",
        "output",
        "message",
        "kind",
        "images",
        "status",
        "action",
        "result",
        "success",
        "exit_code",
        "id",
        "cwd",
        "namespace",
        "cli_version",
        "timestamp",
    ]
)


def typed(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, **fields}


def line_of(stamp: Any, kind: str, payload: Any) -> dict[str, Any]:
    return {"timestamp": stamp, "type": kind, "payload": payload}


PAYLOADS: st.SearchStrategy[dict[str, Any]] = st.builds(
    typed,
    PAYLOAD_KINDS,
    st.dictionaries(
        FIELDS, JSON | st.sampled_from(["user", "assistant", "c1", "plain"]), max_size=6
    ),
)
ROLLOUT_LINES: st.SearchStrategy[dict[str, Any]] = st.builds(
    line_of,
    st.one_of(st.just(at(1)), JSON),
    KINDS,
    st.one_of(PAYLOADS, JSON),
)
CODEX_LINES = st.sampled_from(
    [
        meta(),
        *prompt("a prompt", 1),
        *assistant("an answer", 2),
        call("shell", {"command": ["ls"]}, "c1", 3),
        output("c1", "Exit code: 0\nWall time: 0 seconds\nOutput:\n", 4),
        task_complete(5),
    ]
)
"""Lines as Codex writes them, so that exchanges form among the arbitrary ones."""
LINES: st.SearchStrategy[list[Any]] = st.lists(
    st.one_of(CODEX_LINES, ROLLOUT_LINES, PAYLOADS, JSON, st.text(max_size=30)), max_size=25
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=LINES, finished=st.booleans())
def test_arbitrary_lines_never_raise(tmp_path: Path, lines: list[Any], finished: bool) -> None:
    path = tmp_path / FILE
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(
                (line if isinstance(line, str) else json.dumps(line)).replace("\n", " ") + "\n"
            )

    for item in read_codex_session(path, finished=finished):
        assert isinstance(item, Exchange | Skipped)
        if isinstance(item, Exchange):
            assert item.turns
            assert item.turns[0].role == "user"
