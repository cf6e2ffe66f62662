"""Which kind of file a path holds, told from its first lines, and the files under a folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

Kind = Literal["claude-code", "codex", "reflexio"]

SUFFIXES = (".jsonl", ".json")
SNIFF_LINES = 20
SNIFF_LINE_BYTES = 2**20
_CLAUDE_TYPES = frozenset(
    {"user", "assistant", "summary", "system", "attachment", "queue-operation",
     "file-history-snapshot", "last-prompt", "mode"}
)  # fmt: skip
_CODEX_TYPES = frozenset(
    {"session_meta", "response_item", "event_msg", "turn_context", "compacted"}
)


def files_under(paths: list[Path]) -> Iterator[Path]:
    """Each path that is a file, and the .jsonl/.json files under each folder, in name order,
    each once however often it is named (symbolic links to folders are not followed)."""
    seen: set[Path] = set()
    for path in paths:
        found = [path] if not path.is_dir() else _under(path)
        for file in found:
            if (real := file.resolve()) not in seen:
                seen.add(real)
                yield file


def _under(folder: Path) -> Iterator[Path]:
    for parent, subfolders, names in os.walk(folder):
        subfolders.sort()
        for name in sorted(names):
            if name.endswith(SUFFIXES):
                yield Path(parent) / name


def kind_of(path: Path) -> Kind | None:
    """The kind of transcript or payload `path` holds; None: none this reads."""
    with path.open("rb") as lines:
        for _ in range(SNIFF_LINES):
            raw = lines.readline(SNIFF_LINE_BYTES)
            if not raw:
                break
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                # One JSON document over several lines: only Reflexio's CLI payloads are that.
                return "reflexio" if raw.lstrip()[:1] in (b"{", b"[") else None
            kind = _line_kind(entry)
            if kind is not None:
                return kind
    return None


def _line_kind(entry: object) -> Kind | None:
    if isinstance(entry, list):
        items = cast(list[Any], entry)
        return (
            "reflexio"
            if items and isinstance(items[0], dict) and "interactions" in items[0]
            else None
        )
    if not isinstance(entry, dict):
        return None
    line = cast(dict[str, Any], entry)
    if isinstance(line.get("interactions"), list):
        return "reflexio"
    if line.get("type") in _CODEX_TYPES and "payload" in line:
        return "codex"
    if {"id", "timestamp", "instructions"} <= line.keys() and "type" not in line:
        return "codex"  # a file Codex wrote before its lines had types (mid 2025)
    if line.get("type") in _CLAUDE_TYPES and "sessionId" in line:
        return "claude-code"
    return None
