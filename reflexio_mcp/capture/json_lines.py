"""A JSON Lines file read line by line, with memory bounded by MAX_LINE_BYTES whatever it holds:
every reader of transcripts and payloads reads its files through `json_lines`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_LINE_BYTES = 64 * 2**20
"""A longer line is skipped unread (a pasted image, a huge tool result)."""


@dataclass(frozen=True)
class Line:
    where: str
    """file:line (file@offset when reading began past the start, where line numbers are
    unknown)."""
    start: int
    """Byte offset of its first byte."""
    end: int
    """Byte offset just after it."""
    value: object = None
    """Its JSON value, when `problem` is None."""
    problem: str | None = None
    """Why it could not be read: it is skipped, and reading goes on."""


def json_lines(path: Path, *, start: int = 0, finished: bool = True) -> Iterator[Line]:
    """The lines of `path` from byte `start` (a line's first byte), blank ones left out. Unless
    `finished`, an unterminated last line that is not JSON ends the reading: it is the line
    being written right now, read next time."""
    with path.open("rb") as lines:
        lines.seek(start)
        offset, number = start, 0
        while raw := lines.readline(MAX_LINE_BYTES + 1):
            number += 1
            where = f"{path}:{number}" if start == 0 else f"{path}@{offset}"
            begin, offset = offset, offset + len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                offset = _past_line(lines)
                yield Line(
                    where,
                    begin,
                    offset,
                    problem=f"a line longer than {MAX_LINE_BYTES // 2**20} MiB",
                )
                continue
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
                if not raw.endswith(b"\n") and not finished:
                    return
                yield Line(where, begin, offset, problem=f"not JSON ({type(err).__name__})")
                continue
            yield Line(where, begin, offset, value)


def _past_line(lines: BinaryIO) -> int:
    while (chunk := lines.readline(2**20)) and not chunk.endswith(b"\n"):
        pass
    return lines.tell()
