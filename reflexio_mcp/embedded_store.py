"""The embedded backend: interactions in a local SQLite file, searched with FTS5/bm25.

It keeps Reflexio's rules (request_id stored once, source pattern, sizes, 10 MiB per publish)
and answers in Reflexio's shapes, so tools cannot tell the two apart, except that nothing is
learned here: profiles and playbooks need a Reflexio server.

Two full-text indexes: words (porter, unicode61) over content, expert_content and
user_action_description, kept by triggers; and CJK character pairs (see search_text), kept
by this module in the same transaction as the rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from reflexio_mcp.backend import StoredListener, already_stored
from reflexio_mcp.errors import StoreError, not_found
from reflexio_mcp.models import (
    BackendStatus,
    GetRequest,
    Interaction,
    Keyset,
    KnownIds,
    Published,
    PublishRequest,
    PublishStatus,
    SearchRequest,
    SessionPage,
    SessionSummary,
    iso_time,
    newest_first,
)
from reflexio_mcp.search_text import cjk_grams, cjk_match, word_match
from reflexio_mcp.sqlite_file import BUSY_TIMEOUT_SECONDS, READ_SECONDS, SqliteFile

SCHEMA_VERSION = 2
FILE_NAME = "interactions.sqlite3"
DEFAULT_SEARCH_LIMIT = 10
"""Reflexio's own default when neither top_k nor most_recent_k is given."""
NO_LEARNING = (
    "stored in the embedded store; no learning happens here: profiles and playbooks need a "
    "Reflexio backend (set REFLEXIO_URL)"
)

CJK_INDEX = """
    CREATE VIRTUAL TABLE interactions_cjk USING fts5 (grams, tokenize='unicode61');
"""
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
    CJK_INDEX,
]
"""One statement each: executescript() would COMMIT the transaction that guards them."""
LOOKUP_INDEXES = [
    "CREATE INDEX IF NOT EXISTS publishes_by_user_session ON publishes (user_id, session_id)",
    "CREATE INDEX IF NOT EXISTS interactions_by_request ON interactions (request_id)",
]
"""For reading one session: its publishes, then their turns. Made at open when missing (a
file of an earlier version gains them; one that has them reads the same to it)."""

COLUMN_NAMES = (
    "interaction_id", "user_id", "request_id", "created_at", "role", "content", "expert_content",
    "user_action", "user_action_description", "interacted_image_url", "tools_used",
)  # fmt: skip
COLUMNS = ", ".join(COLUMN_NAMES)
COLUMNS_OF_I = ", ".join(f"i.{column}" for column in COLUMN_NAMES)
NEWEST_FIRST = "created_at DESC, interaction_id DESC"
I_NEWEST_FIRST = "i.created_at DESC, i.interaction_id DESC"


class EmbeddedStore:
    """A Backend over one SQLite file. Use as an async context manager."""

    learns = False
    remote = False

    def __init__(
        self,
        data_dir: Path,
        *,
        read_seconds: float = READ_SECONDS,
        busy_seconds: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = data_dir / FILE_NAME
        self.description = f"the embedded store at {self.path}"
        self._file = SqliteFile(
            self.path, self._prepare, read_seconds=read_seconds, busy_seconds=busy_seconds
        )

    def __repr__(self) -> str:
        return f"EmbeddedStore(path={str(self.path)!r})"

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

    def _prepare(self, db: sqlite3.Connection) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "schema_version" not in tables:
            for statement in [*SCHEMA, *LOOKUP_INDEXES]:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            return
        (version,) = db.execute("SELECT version FROM schema_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer reflexio-mcp (schema {version}); "
                "upgrade reflexio-mcp or point REFLEXIO_MCP_DATA_DIR elsewhere"
            )
        if version < 2:  # 1 -> 2: the CJK bigram index, filled from the rows already stored
            db.execute(CJK_INDEX)
            rows = db.execute(
                "SELECT interaction_id, content, expert_content, user_action_description "
                "FROM interactions"
            )
            _index_cjk(db, [(row[0], row[1:]) for row in rows])
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        for statement in LOOKUP_INDEXES:
            db.execute(statement)

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> Published:
        request.checked_body()  # Reflexio's 10 MiB limit holds here too
        now = int(time.time())

        def insert(db: sqlite3.Connection) -> str | None:
            earlier = db.execute(
                "SELECT user_id FROM publishes WHERE request_id = ?", (request.request_id,)
            ).fetchone()
            if earlier is not None:
                return str(earlier[0])
            db.execute(
                "INSERT INTO publishes VALUES (?, ?, ?, ?, ?, ?)",
                (request.request_id, request.user_id, request.session_id,
                 request.source, request.agent_version, now),
            )  # fmt: skip
            stored: list[tuple[int, tuple[str, ...]]] = []
            for turn in request.interaction_data_list:
                cursor = db.execute(
                    "INSERT INTO interactions (user_id, request_id, created_at, role, content, "
                    "expert_content, user_action, user_action_description, interacted_image_url, "
                    "image_encoding, tools_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (request.user_id, request.request_id,
                     now if turn.created_at is None else turn.created_at, turn.role,
                     turn.content, turn.expert_content, turn.user_action,
                     turn.user_action_description, turn.interacted_image_url,
                     turn.image_encoding,
                     json.dumps([t.model_dump() for t in turn.tools_used], ensure_ascii=False)),
                )  # fmt: skip
                texts = (turn.content, turn.expert_content, turn.user_action_description)
                stored.append((int(cursor.lastrowid or 0), texts))
            _index_cjk(db, stored)
            return None

        earlier_user = await self._file.write(insert)
        if earlier_user is not None:
            return already_stored(request.request_id, same_user=earlier_user == request.user_id)
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
        return Published(
            message=f"Interaction published successfully: {NO_LEARNING}",
            learning_status="unavailable",
            learning_reason="embedded store",
            warnings=warnings,
        )

    async def publish_status(self, user_id: str, request_id: str) -> PublishStatus:
        def find(db: sqlite3.Connection) -> tuple[int, int] | None:
            row = db.execute(
                "SELECT p.published_at, (SELECT count(*) FROM interactions i WHERE "
                "i.request_id = p.request_id) FROM publishes p WHERE p.request_id = ? AND "
                "p.user_id = ?",
                (request_id, user_id),
            ).fetchone()
            return None if row is None else (int(row[0]), int(row[1]))

        found = await self._file.read(find)
        if found is None:
            return PublishStatus(
                request_id=request_id,
                user_id=user_id,
                status="unknown",
                detail=f"no publish with request_id {request_id!r} for user {user_id!r} in "
                "the embedded store",
            )
        published_at, turns = found
        return PublishStatus(
            request_id=request_id,
            user_id=user_id,
            status="delivered",
            detail="stored in the embedded store when it was published (publishes here are "
            f"never queued); {turns} of its turns are kept",
            turns=turns,
            attempts=1,
            queued_at=iso_time(published_at),
            delivered_at=iso_time(published_at),
        )

    async def get_interactions(
        self, request: GetRequest, after: Keyset | None = None
    ) -> list[Interaction]:
        where, params = _window(request.user_id, request.start_time, request.end_time)
        where, params = _within_keyset(where, params, after)
        sql = f"SELECT {COLUMNS} FROM interactions WHERE {where} ORDER BY {NEWEST_FIRST} LIMIT ?"
        return await self._select(sql, (*params, request.top_k))

    async def search_interactions(
        self, request: SearchRequest, among: Sequence[int] | None = None
    ) -> list[Interaction]:
        if among is not None:  # found before, and a stored turn never changes: look them up
            marks = ", ".join("?" * len(among))
            sql = f"SELECT {COLUMNS} FROM interactions WHERE user_id = ? AND interaction_id IN "
            sql += f"({marks})"
            return await self._select(sql, (request.user_id, *among))
        where, params = _window(request.user_id, request.start_time, request.end_time, "i.")
        if request.request_id:
            where += " AND i.request_id = ?"
            params.append(request.request_id)
        limits = [k for k in (request.top_k, request.most_recent_k) if k]
        limit = min(limits) if limits else DEFAULT_SEARCH_LIMIT
        if request.query is None:
            sql = (
                f"SELECT {COLUMNS_OF_I} FROM interactions i WHERE {where} ORDER BY {I_NEWEST_FIRST}"
            )
            return await self._select(f"{sql} LIMIT ?", (*params, limit))
        indexes = [
            (table, match)
            for table, match in (
                ("interactions_fts", word_match(request.query)),
                ("interactions_cjk", cjk_match(request.query)),
            )
            if match
        ]
        if not indexes:  # only punctuation or symbols: nothing can match (as on Reflexio)
            return []
        # Vector and hybrid modes fall back to full text, as Reflexio does without embeddings.
        matches = " UNION ALL ".join(
            f"SELECT rowid AS id, rank FROM {table} WHERE {table} MATCH ?" for table, _ in indexes
        )
        sql = (
            f"SELECT {COLUMNS_OF_I} FROM "
            f"(SELECT id, min(rank) AS rank FROM ({matches}) GROUP BY id) m "
            f"JOIN interactions i ON i.interaction_id = m.id WHERE {where} "
            f"ORDER BY m.rank, {I_NEWEST_FIRST} LIMIT ?"
        )
        best = await self._select(sql, (*(match for _, match in indexes), *params, limit))
        # As Reflexio: most_recent_k keeps the k best matches, shown newest first.
        return newest_first(best) if request.most_recent_k else best

    async def get_all_interactions(
        self, limit: int, after: Keyset | None = None
    ) -> list[Interaction]:
        where, params = _within_keyset("1", [], after)
        sql = f"SELECT {COLUMNS} FROM interactions WHERE {where} ORDER BY {NEWEST_FIRST} LIMIT ?"
        return await self._select(sql, (*params, limit))

    async def find_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        sql = f"SELECT {COLUMNS} FROM interactions WHERE interaction_id = ? AND user_id = ?"
        found = await self._select(sql, (interaction_id, user_id))
        if not found:
            raise not_found(user_id, interaction_id)
        return found[0]

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        def delete(db: sqlite3.Connection) -> Interaction | None:
            row = db.execute(
                f"SELECT {COLUMNS} FROM interactions WHERE interaction_id = ? AND user_id = ?",
                (interaction_id, user_id),
            ).fetchone()
            if row is None:
                return None
            # Read before deleting, in the same transaction: if it cannot be shown, it stays.
            deleted = _interaction(row)
            db.execute("DELETE FROM interactions WHERE interaction_id = ?", (interaction_id,))
            db.execute("DELETE FROM interactions_cjk WHERE rowid = ?", (interaction_id,))
            return deleted

        deleted = await self._file.write(delete)
        if deleted is None:
            raise not_found(user_id, interaction_id)
        return deleted

    async def session_interactions(
        self, user_id: str, session_id: str, top_k: int
    ) -> list[Interaction]:
        sql = (
            f"SELECT {COLUMNS_OF_I} FROM publishes p JOIN interactions i "
            "ON i.request_id = p.request_id WHERE p.user_id = ? AND p.session_id = ? "
            f"AND i.user_id = ? ORDER BY {I_NEWEST_FIRST} LIMIT ?"
        )
        return await self._select(sql, (user_id, session_id, user_id, top_k))

    async def sessions(self, user_id: str, *, offset: int, limit: int) -> SessionPage:
        def page(db: sqlite3.Connection) -> list[SessionSummary]:
            rows = db.execute(
                "SELECT p.session_id, count(*), max(p.published_at) FROM publishes p "
                "JOIN interactions i ON i.request_id = p.request_id WHERE p.user_id = ? "
                "GROUP BY p.session_id ORDER BY max(p.published_at) DESC, p.session_id DESC "
                "LIMIT ? OFFSET ?",
                (user_id, limit + 1, offset),
            )
            return [
                SessionSummary(session_id=row[0], turns=row[1], published_at=row[2]) for row in rows
            ]

        found = await self._file.read(page)
        return SessionPage(sessions=found[:limit], has_more=len(found) > limit)

    async def session_ids(self, user_id: str, prefix: str, limit: int) -> KnownIds:
        sql = (
            "SELECT p.session_id, count(*) OVER () FROM publishes p WHERE p.user_id = ? "
            "AND substr(p.session_id, 1, ?) = ? AND EXISTS (SELECT 1 FROM interactions i "
            "WHERE i.request_id = p.request_id) GROUP BY p.session_id "
            "ORDER BY max(p.published_at) DESC, p.session_id DESC LIMIT ?"
        )
        return await self._known(sql, (user_id, len(prefix), prefix, limit))

    async def user_ids(self, prefix: str, limit: int) -> KnownIds:
        sql = (
            "SELECT user_id, count(*) OVER () FROM interactions WHERE substr(user_id, 1, ?) = ? "
            "GROUP BY user_id ORDER BY max(created_at) DESC, max(interaction_id) DESC LIMIT ?"
        )
        return await self._known(sql, (len(prefix), prefix, limit))

    async def _known(self, sql: str, params: Sequence[Any]) -> KnownIds:
        def select(db: sqlite3.Connection) -> KnownIds:
            rows = db.execute(sql, params).fetchall()
            total = int(rows[0][1]) if rows else 0
            return KnownIds(
                values=[str(row[0]) for row in rows], total=total, has_more=total > len(rows)
            )

        return await self._file.read(select)

    def watch_stored(self, listener: StoredListener) -> Callable[[], None]:
        """Every publish here is stored at once (never queued): nothing to tell later."""
        return _nothing

    async def status(self, user_id: str) -> BackendStatus:
        def count(db: sqlite3.Connection) -> tuple[int, int, int]:
            interactions, users, mine = db.execute(
                "SELECT count(*), count(DISTINCT user_id), count(*) FILTER (WHERE user_id = ?) "
                "FROM interactions",
                (user_id,),
            ).fetchone()
            return int(interactions), int(users), int(mine)

        interactions, users, mine = await self._file.read(count)
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

        return await self._file.read(select)


def _nothing() -> None:
    pass


def _index_cjk(db: sqlite3.Connection, rows: Sequence[tuple[int, Sequence[str]]]) -> None:
    db.executemany(
        "INSERT INTO interactions_cjk (rowid, grams) VALUES (?, ?)",
        [(rowid, grams) for rowid, texts in rows if (grams := cjk_grams(*texts))],
    )


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


def _within_keyset(where: str, params: list[Any], after: Keyset | None) -> tuple[str, list[Any]]:
    if after is None:
        return where, params
    where += (
        " AND (created_at, interaction_id) < (?, ?) AND (created_at, interaction_id) >= (?, ?)"
        " AND interaction_id <= ?"
    )
    bounds = (after.last_created, after.last_id, after.floor_created, after.floor_id)
    return where, [*params, *bounds, after.max_id]


def _interaction(row: Sequence[Any]) -> Interaction:
    data = dict(zip(COLUMN_NAMES, row, strict=True))
    try:
        data["tools_used"] = json.loads(data["tools_used"])
    except (TypeError, ValueError):  # written by hand, or by something else: show nothing
        data["tools_used"] = []
    return Interaction.model_validate(data)
