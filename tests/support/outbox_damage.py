"""Damaging an outbox file as a crash or a bad disk would: whole pages overwritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

PAGE = 4096


def overwrite_page(path: Path, page: int, data: bytes = b"\xff" * PAGE) -> None:
    with path.open("r+b") as file:
        file.seek(PAGE * (page - 1))
        file.write(data)


def root_page(path: Path, name: str) -> int:
    with sqlite3.connect(path) as db:
        (page,) = db.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?", (name,)
        ).fetchone()
    db.close()
    return int(page)


def damaged_while_open(path: Path, *, page: int | None = None) -> None:
    """One index page overwritten under a running outbox (the rows intact), then a commit
    by another connection, as another process sharing the file makes: SQLite then drops its
    cached pages, so the running outbox reads the damaged page from disk. (Checkpointed
    first, so no newer copy of the page waits in the WAL.)"""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    overwrite_page(path, page or root_page(path, "outbox_sessions"))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 1")
    db.close()
