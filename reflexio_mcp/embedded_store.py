"""The embedded backend: interactions in a local SQLite file, searched with FTS5/bm25.

It keeps Reflexio's rules (request_id stored once, source pattern, sizes, 10 MiB per publish)
and answers in Reflexio's shapes, so tools cannot tell the two apart, except that nothing is
learned here: profiles and playbooks need a Reflexio server.

SQLite runs in worker threads (anyio.to_thread), one at a time on one connection. WAL mode and
BEGIN IMMEDIATE let several processes (two Claude windows) share the file without losing writes.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio

from reflexio_mcp.errors import ReflexioError, not_found
from reflexio_mcp.models import (
    BackendStatus,
    GetRequest,
    Interaction,
    PublishAnswer,
    PublishRequest,
    SearchRequest,
    newest_first,
)

SCHEMA_VERSION = 1
FILE_NAME = "interactions.sqlite3"
BUSY_TIMEOUT_MS = 10_000
DEFAULT_SEARCH_LIMIT = 10
"""Reflexio's own default when neither top_k nor most_recent_k is given."""
NO_LEARNING = (
    "stored in the embedded store; no learning happens here: profiles and playbooks need a "
    "Reflexio backend (set REFLEXIO_URL)"
)

SCHEMA = [
    """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    """,
    """
    CREATE TABLE publishes (
        request_id    TEXT PRIMARY KEY,
        user_id       TEXT NOT NULL,
        session_id    TEXT NOT NULL,
        source        TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        published_at  INTEGER NOT NULL
    );
    """,
    """
    -- AUTOINCREMENT: an id is never reused, even after deletes.
    CREATE TABLE interactions (
        interaction_id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id                 TEXT NOT NULL,
        request_id              TEXT NOT NULL REFERENCES publishes(request_id),
        created_at              INTEGER NOT NULL,
        role                    TEXT NOT NULL,
        content                 TEXT NOT NULL,
        expert_content          TEXT NOT NULL,
        user_action             TEXT NOT NULL,
        user_action_description TEXT NOT NULL,
        interacted_image_url    TEXT NOT NULL,
        image_encoding          TEXT NOT NULL,
        tools_used              TEXT NOT NULL
    );
    """,
    """
    CREATE INDEX interactions_by_user_time
        ON interactions (user_id, created_at DESC, interaction_id DESC);
    """,
    """
    CREATE INDEX interactions_by_time ON interactions (created_at DESC, interaction_id DESC);
    """,
    """
    CREATE VIRTUAL TABLE interactions_fts USING fts5 (
        content, expert_content, user_action_description,
        content='interactions', content_rowid='interaction_id', tokenize='porter unicode61'
    );
    """,
    """
    CREATE TRIGGER interactions_fts_insert AFTER INSERT ON interactions BEGIN
        INSERT INTO interactions_fts (rowid, content, expert_content, user_action_description)
        VALUES (new.interaction_id, new.content, new.expert_content, new.user_action_description);
    END;
    """,
    """
    CREATE TRIGGER interactions_fts_delete AFTER DELETE ON interactions BEGIN
        INSERT INTO interactions_fts (interactions_fts, rowid, content, expert_content,
                                      user_action_description)
        VALUES ('delete', old.interaction_id, old.content, old.expert_content,
                old.user_action_description);
    END;
    """,
]
"""One statement each: executescript() would COMMIT the transaction that guards them."""

COLUMN_NAMES = (
    "interaction_id", "user_id", "request_id", "created_at", "role", "content", "expert_content",
    "user_action", "user_action_description", "interacted_image_url", "tools_used",
)  # fmt: skip
COLUMNS = ", ".join(COLUMN_NAMES)
COLUMNS_OF_I = ", ".join(f"i.{column}" for column in COLUMN_NAMES)
NEWEST_FIRST = "created_at DESC, interaction_id DESC"
I_NEWEST_FIRST = "i.created_at DESC, i.interaction_id DESC"
_WORD = re.compile(r"\w+", re.UNICODE)
_T = TypeVar("_T")


def default_data_dir() -> Path:
    """Where a user's data lives on this platform."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reflexio-mcp"


class EmbeddedStore:
    """A Backend over one SQLite file. Use as an async context manager."""

    learns = False
    remote = False

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self.description = f"the embedded store at {self.path}"
        self._db: sqlite3.Connection | None = None
        self._one_at_a_time = anyio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"EmbeddedStore(path={str(self.path)!r})"

    async def __aenter__(self) -> Self:
        self._db = await anyio.to_thread.run_sync(self._open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await anyio.to_thread.run_sync(db.close)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                # Owner-only from the first byte; SQLite gives its -wal/-shm files the same mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except OSError as err:
            raise ReflexioError(
                f"cannot open the embedded store at {self.path}: {err.strerror}; "
                "set REFLEXIO_MCP_DATA_DIR to a writable folder"
            ) from None
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        with _write(db):
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if "schema_version" not in tables:
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        (version,) = db.execute("SELECT version FROM schema_version").fetchone()
        if version > SCHEMA_VERSION:
            db.close()
            raise ReflexioError(
                f"{self.path} was written by a newer reflexio-mcp (schema {version}); "
                "upgrade reflexio-mcp or point REFLEXIO_MCP_DATA_DIR elsewhere"
            )
        return db

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        db = self._db
        if db is None:
            raise RuntimeError("EmbeddedStore used outside `async with`")
        return await anyio.to_thread.run_sync(work, db, limiter=self._one_at_a_time)

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> PublishAnswer:
        request.to_body()  # Reflexio's 10 MiB limit holds here too
        now = int(time.time())

        def insert(db: sqlite3.Connection) -> bool:
            with _write(db):
                try:
                    db.execute(
                        "INSERT INTO publishes VALUES (?, ?, ?, ?, ?, ?)",
                        (request.request_id, request.user_id, request.session_id,
                         request.source, request.agent_version, now),
                    )  # fmt: skip
                except sqlite3.IntegrityError:
                    return False
                db.executemany(
                    "INSERT INTO interactions (user_id, request_id, created_at, role, content, "
                    "expert_content, user_action, user_action_description, interacted_image_url, "
                    "image_encoding, tools_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (request.user_id, request.request_id,
                         now if turn.created_at is None else turn.created_at, turn.role,
                         turn.content, turn.expert_content, turn.user_action,
                         turn.user_action_description, turn.interacted_image_url,
                         turn.image_encoding,
                         json.dumps([t.model_dump() for t in turn.tools_used], ensure_ascii=False))
                        for turn in request.interaction_data_list
                    ],
                )  # fmt: skip
            return True

        if not await self._run(insert):
            return PublishAnswer(
                success=False, message=f"request_id '{request.request_id}' already exists"
            )
        ignored = [
            name
            for name, value in (
                ("wait_for_response", wait_for_response),
                ("force_extraction", request.force_extraction),
                ("skip_aggregation", request.skip_aggregation),
            )
            if value
        ]
        warnings = [f"{', '.join(ignored)} ignored: {NO_LEARNING}"] if ignored else []
        return PublishAnswer(
            success=True,
            message=f"Interaction published successfully: {NO_LEARNING}",
            request_id=request.request_id,
            learning_status="unavailable",
            learning_reason="embedded store",
            warnings=warnings,
        )

    async def get_interactions(self, request: GetRequest) -> list[Interaction]:
        where, params = _window(request.user_id, request.start_time, request.end_time)
        sql = f"SELECT {COLUMNS} FROM interactions WHERE {where} ORDER BY {NEWEST_FIRST} LIMIT ?"
        return await self._select(sql, (*params, request.top_k))

    async def search_interactions(self, request: SearchRequest) -> list[Interaction]:
        where, params = _window(request.user_id, request.start_time, request.end_time, "i.")
        if request.request_id:
            where += " AND i.request_id = ?"
            params.append(request.request_id)
        limits = [k for k in (request.top_k, request.most_recent_k) if k]
        limit = min(limits) if limits else DEFAULT_SEARCH_LIMIT
        match = _fts_query(request.query or "")
        if not match:
            sql = (
                f"SELECT {COLUMNS_OF_I} FROM interactions i WHERE {where} ORDER BY {I_NEWEST_FIRST}"
            )
            return await self._select(f"{sql} LIMIT ?", (*params, limit))
        # Vector and hybrid modes fall back to full text, as Reflexio does without embeddings.
        sql = (
            f"SELECT {COLUMNS_OF_I} FROM interactions_fts f "
            "JOIN interactions i ON i.interaction_id = f.rowid "
            f"WHERE interactions_fts MATCH ? AND {where} ORDER BY f.rank, {I_NEWEST_FIRST} LIMIT ?"
        )
        best = await self._select(sql, (match, *params, limit))
        # As Reflexio: most_recent_k keeps the k best matches, shown newest first.
        return newest_first(best) if request.most_recent_k else best

    async def get_all_interactions(self, limit: int) -> list[Interaction]:
        sql = f"SELECT {COLUMNS} FROM interactions ORDER BY {NEWEST_FIRST} LIMIT ?"
        return await self._select(sql, (limit,))

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        def delete(db: sqlite3.Connection) -> tuple[Any, ...] | None:
            with _write(db):
                row: tuple[Any, ...] | None = db.execute(
                    f"SELECT {COLUMNS} FROM interactions WHERE interaction_id = ? AND user_id = ?",
                    (interaction_id, user_id),
                ).fetchone()
                if row is not None:
                    db.execute(
                        "DELETE FROM interactions WHERE interaction_id = ?", (interaction_id,)
                    )
            return row

        row = await self._run(delete)
        if row is None:
            raise not_found(user_id, interaction_id)
        return _interaction(row)

    async def status(self, user_id: str) -> BackendStatus:
        def count(db: sqlite3.Connection) -> tuple[int, int, int]:
            interactions, users, mine = db.execute(
                "SELECT count(*), count(DISTINCT user_id), count(*) FILTER (WHERE user_id = ?) "
                "FROM interactions",
                (user_id,),
            ).fetchone()
            return int(interactions), int(users), int(mine)

        interactions, users, mine = await self._run(count)
        return BackendStatus(
            backend="embedded",
            location=str(self.path),
            reachable=True,
            learning=self.learns,
            user_interactions=mine,
            interactions=interactions,
            users=users,
            detail=f"Interactions are {NO_LEARNING}.",
        )

    async def _select(self, sql: str, params: Sequence[Any]) -> list[Interaction]:
        def select(db: sqlite3.Connection) -> list[Interaction]:
            return [_interaction(row) for row in db.execute(sql, params)]

        return await self._run(select)


class _write:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front, so a second process waits
    (busy_timeout) instead of failing half-way through an upgrade from read to write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _window(
    user_id: str, start: datetime | None, end: datetime | None, table: str = ""
) -> tuple[str, list[Any]]:
    where = f"{table}user_id = ?"
    params: list[Any] = [user_id]
    if start is not None:
        where += f" AND {table}created_at >= ?"
        params.append(int(start.timestamp()))
    if end is not None:
        where += f" AND {table}created_at <= ?"
        params.append(int(end.timestamp()))
    return where, params


def _fts_query(text: str) -> str:
    """Any words, any order: each word quoted (so FTS5 syntax in user text is inert), OR-ed,
    the last one also matching as a prefix, as Reflexio's own search does."""
    words = _WORD.findall(text)
    if not words:
        return ""
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " OR ".join(quoted)


def _interaction(row: Sequence[Any]) -> Interaction:
    fields = dict(zip(COLUMN_NAMES, row, strict=True))
    fields["tools_used"] = json.loads(fields["tools_used"])
    return Interaction.model_validate(fields)
