"""The real Claude Code CLI (`claude -p`) runs offline against the Messages API stand-in: it
prints the scripted answer, writes its transcript where we look for it, and runs a tool the
stand-in asks for, sending the tool's result back."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.support.claude_code import claude_code
from tests.support.messages_api import MessagesApi, tool_results


def test_claude_prints_the_answer_the_stand_in_gives(tmp_path: Path) -> None:
    claude = claude_code(tmp_path)
    with MessagesApi() as api:
        api.reply_text("The stand-in says hello.")
        run = claude.prompt("say hello", api=api)
        requests = api.requests

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "The stand-in says hello."
    assert len(requests) == 1
    assert "say hello" in str(requests[0]["messages"][0]["content"])
    assert requests[0]["stream"] is True
    assert requests[0]["tools"], "the agent loop's request lists its tools"


def test_a_resumed_session_appends_both_turns_to_one_transcript(tmp_path: Path) -> None:
    claude = claude_code(tmp_path)
    session = str(uuid.uuid4())
    with MessagesApi() as api:
        api.reply_text("First answer.")
        api.reply_text("Second answer.")
        first = claude.prompt("first question", "--session-id", session, api=api)
        second = claude.prompt("second question", "--resume", session, api=api)

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert [path.name for path in claude.transcripts()] == [f"{session}.jsonl"]
    lines = claude.transcript(session)
    chain = [line for line in lines if "uuid" in line]
    assert {line["sessionId"] for line in lines} == {session}
    assert [text for line in chain if (text := prompt_text(line))] == [
        "first question",
        "second question",
    ]
    assert [text for line in chain if (text := answer_text(line))] == [
        "First answer.",
        "Second answer.",
    ]
    parents = {line["uuid"]: line["parentUuid"] for line in chain}
    assert list(parents.values()).count(None) == 1, "one chain from the first turn to the last"


def test_a_tool_use_reply_runs_the_tool_and_its_result_comes_back(tmp_path: Path) -> None:
    claude = claude_code(tmp_path)
    with MessagesApi() as api:
        api.reply_tool_use(
            "Bash", {"command": "echo standin-marker-42", "description": "Print a marker"}
        )
        api.reply_text("The command printed the marker.")
        run = claude.prompt("run the marker command", "--allowedTools", "Bash", api=api)
        requests = api.requests

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "The command printed the marker."
    assert len(requests) == 2
    [result] = tool_results(requests[1])
    assert result["content"] == "standin-marker-42"
    assert result["is_error"] is False
    [tool_use] = [
        block
        for turn in requests[1]["messages"]
        if turn["role"] == "assistant"
        for block in turn["content"]
        if block["type"] == "tool_use"
    ]
    assert result["tool_use_id"] == tool_use["id"]


def prompt_text(line: dict[str, Any]) -> str | None:
    """The text a user typed, if this transcript line is a prompt (not a tool_result, whose
    content is a list, nor a meta line)."""
    content = line.get("message", {}).get("content")
    if line["type"] == "user" and isinstance(content, str) and not line.get("isMeta"):
        return content
    return None


def answer_text(line: dict[str, Any]) -> str | None:
    if line["type"] != "assistant":
        return None
    texts = [block["text"] for block in line["message"]["content"] if block["type"] == "text"]
    return "".join(texts) or None
