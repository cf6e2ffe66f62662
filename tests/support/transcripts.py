"""Claude Code transcripts written line for line as Claude Code 2.1.197 writes them (fields
copied from transcripts the real CLI wrote against the stand-in Messages API; the e2e tests in
tests/e2e/test_claude_code_capture.py read the real thing)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Transcript:
    """One session's transcript, built up line by line."""

    cwd: str = "/home/dev/projects/shop"
    session: str = field(default_factory=lambda: str(uuid.uuid4()))
    lines: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    _last: str | None = None
    _second: int = 0

    def _common(self, kind: str) -> dict[str, Any]:
        self._second += 1
        line: dict[str, Any] = {
            "parentUuid": self._last,
            "isSidechain": False,
            "type": kind,
            "uuid": str(uuid.uuid4()),
            "timestamp": f"2026-11-30T10:{self._second // 60:02d}:{self._second % 60:02d}.000Z",
            "userType": "external",
            "entrypoint": "sdk-cli",
            "cwd": self.cwd,
            "sessionId": self.session,
            "version": "2.1.197",
            "gitBranch": "main",
        }
        self._last = line["uuid"]
        return line

    def queue(self, prompt: str) -> Transcript:
        self.lines.append(
            {
                "type": "queue-operation",
                "operation": "enqueue",
                "timestamp": "2026-11-30T10:00:00.000Z",
                "sessionId": self.session,
                "content": prompt,
            }
        )
        return self

    def prompt(self, text: str | list[dict[str, Any]], **extra: Any) -> Transcript:
        line = self._common("user")
        line.update(promptId=str(uuid.uuid4()), message={"role": "user", "content": text}, **extra)
        self.lines.append(line)
        return self

    def attachment(self) -> Transcript:
        line = self._common("attachment")
        line["attachment"] = {"type": "skill_listing", "content": "- deep-research: ..."}
        self.lines.append(line)
        return self

    def text(
        self, text: str, stop: str = "end_turn", model: str = "claude-opus-4-8", **extra: Any
    ) -> Transcript:
        return self._assistant([{"type": "text", "text": text}], stop, model, **extra)

    def tool(
        self, name: str, tool_input: dict[str, Any], result: str, *, error: bool = False
    ) -> Transcript:
        tool_id = f"toolu_{uuid.uuid4().hex[:12]}"
        self._assistant(
            [{"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}], "tool_use"
        )
        line = self._common("user")
        line["message"] = {
            "role": "user",
            "content": [
                {
                    "tool_use_id": tool_id,
                    "type": "tool_result",
                    "content": result,
                    "is_error": error,
                }
            ],
        }
        line["toolUseResult"] = {"stdout": result, "stderr": ""}
        self.lines.append(line)
        return self

    def _assistant(
        self, content: list[dict[str, Any]], stop: str, model: str = "claude-opus-4-8", **extra: Any
    ) -> Transcript:
        line = self._common("assistant")
        line.update(extra)
        line["message"] = {
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop, "stop_sequence": None,
        }  # fmt: skip
        self.lines.append(line)
        return self

    def last_prompt(self) -> Transcript:
        self.lines.append(
            {
                "type": "last-prompt",
                "lastPrompt": "...",
                "leafUuid": self._last,
                "sessionId": self.session,
            }
        )
        return self

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.session}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in self.lines))
        return path

    def append_to(self, path: Path, lines: list[dict[str, Any]]) -> None:
        """Lines written at the end of the file, as Claude Code adds them."""
        with path.open("a") as file:
            file.write("".join(json.dumps(line) + "\n" for line in lines))


def exchange(transcript: Transcript, prompt: str, answer: str) -> Transcript:
    """A prompt and its answer, with the lines Claude Code writes around them."""
    return transcript.queue(prompt).prompt(prompt).attachment().text(answer).last_prompt()
