"""How far each transcript has been published, and what the last hook runs did.

Kept in `capture.sqlite3` in the data folder, per store (the embedded one, or a Reflexio URL)
and user, so a Stop hook after every answer reads only what was written since the last one.
It only saves reading: a transcript read again from its start publishes nothing twice
(request ids are derived from the lines). A transcript that no longer ends, at the offset
recorded, with the bytes recorded there (rewritten, truncated) is read from its start again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio

from reflexio_mcp.backends.sqlite_file import SqliteFile

FILE_NAME = "capture.sqlite3"
TAIL_BYTES = 256
"""The bytes before a resume offset that must be unchanged for the offset to hold."""
KEEP_RUNS = 200

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS transcript_progress (
    store TEXT NOT NULL,
    user_id TEXT NOT NULL,
    path TEXT NOT NULL,
    resume_at INTEGER NOT NULL,
    tail_hash TEXT NOT NULL,
    turns INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (store, user_id, path)
)""",
    """
CREATE TABLE IF NOT EXISTS hook_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
)""",
)


@dataclass(frozen=True)
class Resume:
    """Where to go on reading a transcript, and how many turns are behind that point."""

    offset: int
    turns: int
    session_id: str = ""
    """The session its turns were published under."""


@dataclass(frozen=True)
class HookRun:
    at: int
    event: str
    outcome: str
    """"ok" or "failed"."""
    detail: str


def _prepare(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA:  # not executescript: it commits, and this runs in a transaction
        db.execute(statement)


def tail_hash(path: Path, offset: int) -> str:
    with path.open("rb") as file:
        file.seek(max(0, offset - TAIL_BYTES))
        return hashlib.sha256(file.read(min(offset, TAIL_BYTES))).hexdigest()


def _still_ends_with(path: Path, offset: int, recorded: str) -> bool:
    try:
        return path.stat().st_size >= offset and tail_hash(path, offset) == recorded
    except OSError:
        return False


class Progress:
    """The capture log of one data folder. Use as an async context manager."""

    def __init__(self, data_folder: Path, store: str) -> None:
        self._store = store
        self._file = SqliteFile(data_folder / FILE_NAME, _prepare, label="the capture log")

    async def __aenter__(self) -> Self:
        await self._file.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._file.__aexit__(exc_type, exc, tb)

    async def resume(self, user_id: str, path: Path) -> Resume:
        """Where reading `path` may start; the start when nothing holds."""
        row = await self._file.read(
            lambda db: db.execute(
                "SELECT resume_at, tail_hash, turns, session_id FROM transcript_progress "
                "WHERE store = ? AND user_id = ? AND path = ?",
                (self._store, user_id, str(path)),
            ).fetchone()
        )
        if row is None:
            return Resume(0, 0)
        offset, recorded, turns, session = row
        holds = await anyio.to_thread.run_sync(_still_ends_with, path, offset, recorded)
        return Resume(offset, turns, session) if holds else Resume(0, 0)

    async def record(self, user_id: str, path: Path, resume: Resume) -> None:
        digest = await anyio.to_thread.run_sync(tail_hash, path, resume.offset)
        await self._file.write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO transcript_progress VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._store,
                    user_id,
                    str(path),
                    resume.offset,
                    digest,
                    resume.turns,
                    resume.session_id,
                    int(time.time()),
                ),
            )
        )

    async def hook_ran(self, event: str, outcome: str, detail: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO hook_runs (at, event, outcome, detail) VALUES (?, ?, ?, ?)",
                (int(time.time()), event[:100], outcome, detail[:2000]),
            )
            db.execute(
                "DELETE FROM hook_runs WHERE seq <= (SELECT MAX(seq) FROM hook_runs) - ?",
                (KEEP_RUNS,),
            )

        await self._file.write(work)


def last_hook_runs(data_folder: Path, limit: int = 20) -> list[HookRun]:
    """The latest hook runs, newest first (for doctor); none if no hook ever ran here."""
    path = data_folder / FILE_NAME
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as db:
            rows = db.execute(
                "SELECT at, event, outcome, detail FROM hook_runs ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
    except sqlite3.Error:
        return []
    return [HookRun(*row) for row in rows]
