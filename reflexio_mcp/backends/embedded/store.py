"""The embedded backend: interactions in a local SQLite file, searched with FTS5/bm25 and
each turn's neighbours (ranking.py).

It keeps Reflexio's rules (request_id stored once, source pattern, sizes, 10 MiB per publish)
and answers in Reflexio's shapes, so tools cannot tell the two apart, except that nothing is
learned here: profiles and playbooks need a Reflexio server.

Searched through two full-text indexes of each user's own vocabulary, kept in the same
transaction as the rows (schema.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from reflexio_mcp.backends.embedded import search, time_cues, vectors
from reflexio_mcp.backends.embedded.embedder import Embedder, EmbeddingChoice
from reflexio_mcp.backends.embedded.indexer import Indexer
from reflexio_mcp.backends.embedded.neighbours import session_neighbours
from reflexio_mcp.backends.embedded.ranking import CANDIDATES, Ranked
from reflexio_mcp.backends.embedded.schema import FILE_NAME, index_turns, prepare, unindex_turn
from reflexio_mcp.backends.embedded.vocabulary import WORD_COLUMNS, Vocabulary
from reflexio_mcp.backends.sqlite_file import BUSY_TIMEOUT_SECONDS, READ_SECONDS, SqliteFile
from reflexio_mcp.core.backend import StoredListener, already_stored
from reflexio_mcp.core.errors import StoreError, not_found
from reflexio_mcp.core.fields import SearchMode
from reflexio_mcp.core.models import (
    GetRequest,
    Interaction,
    Keyset,
    Matches,
    Published,
    PublishRequest,
    PublishStatus,
    SearchRequest,
    iso_time,
    newest_first,
)
from reflexio_mcp.core.status import (
    BackendStatus,
    KnownIds,
    MeaningIndex,
    SessionPage,
    SessionSummary,
)

if TYPE_CHECKING:
    from reflexio_mcp.backends.embedded.embedder import Vectors

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_LIMIT = 10
"""Reflexio's own default when neither top_k nor most_recent_k is given."""
NO_LEARNING = (
    "stored in the embedded store; no learning happens here: profiles and playbooks need a "
    "Reflexio backend (set REFLEXIO_URL)"
)

COLUMN_NAMES = (
    "interaction_id", "user_id", "request_id", "created_at", "role", "content", "expert_content",
    "user_action", "user_action_description", "interacted_image_url", "tools_used",
)  # fmt: skip
SESSION_OF = "(SELECT session_id FROM publishes WHERE publishes.request_id = {table}request_id)"
"""A turn's session, kept on its publish."""
COLUMNS = ", ".join([*COLUMN_NAMES, SESSION_OF.format(table="interactions.")])
COLUMNS_OF_I = ", ".join(
    [*(f"i.{column}" for column in COLUMN_NAMES), SESSION_OF.format(table="i.")]
)
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
        embedding: EmbeddingChoice | None = None,
    ) -> None:
        self.path = data_dir / FILE_NAME
        self.description = f"the embedded store at {self.path}"
        self._file = SqliteFile(
            self.path, self._prepare, read_seconds=read_seconds, busy_seconds=busy_seconds
        )
        # Two, so a long publish's tokens never hold up a search's few.
        self._index_vocabulary: Vocabulary | None = None
        self._query_vocabulary: Vocabulary | None = None
        self._embedder = Embedder.shared(embedding or EmbeddingChoice())
        self._vectors = vectors.VectorIndex()
        self._indexer = Indexer(self._file, self._embedder)
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"EmbeddedStore(path={str(self.path)!r})"

    async def __aenter__(self) -> Self:
        self._index_vocabulary, self._query_vocabulary = Vocabulary(), Vocabulary()
        async with AsyncExitStack() as stack:
            stack.callback(self._close_vocabularies)
            await stack.enter_async_context(self._file)
            tasks: anyio.abc.TaskGroup = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            if self._embedder.unavailable is None:
                tasks.start_soon(self._indexer.run)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.__aexit__(exc_type, exc, tb)

    def _close_vocabularies(self) -> None:
        for vocabulary in (self._index_vocabulary, self._query_vocabulary):
            if vocabulary is not None:
                vocabulary.close()
        self._index_vocabulary = self._query_vocabulary = None

    def _vocabulary(self, *, query: bool) -> Vocabulary:
        vocabulary = self._query_vocabulary if query else self._index_vocabulary
        if vocabulary is None:
            raise StoreError(f"{self.description} is not open")
        return vocabulary

    def _prepare(self, db: sqlite3.Connection) -> None:
        prepare(db, self.path, self._vocabulary(query=False))
        vectors.prepare(db, self._embedder.model)

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> Published:
        request.checked_body()  # Reflexio's 10 MiB limit holds here too
        now = int(time.time())
        vocabulary = self._vocabulary(query=False)

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
            db.execute("INSERT OR IGNORE INTO user_keys (user_id) VALUES (?)", (request.user_id,))
            user_key = _user_key(db, request.user_id)
            assert user_key is not None  # just made
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
            index_turns(db, vocabulary, user_key, stored)
            return None

        earlier_user = await self._file.write(insert)
        self._indexer.wake()
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

        found = await self._file.read(find, tenant=user_id)
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
        return await self._select(sql, (*params, request.top_k), tenant=request.user_id)

    async def search_interactions(
        self, request: SearchRequest, among: Sequence[int] | None = None
    ) -> Matches:
        limits = [k for k in (request.top_k, request.most_recent_k) if k]
        limit = min(limits) if limits else DEFAULT_SEARCH_LIMIT
        # As many candidates of each kind on every page, so a later page's turns are among
        # those its search ranks again.
        candidates = max(CANDIDATES, limit)
        if among is None:
            return await self._search(request, limit, candidates)
        # Found before, and a stored turn never changes: look them up, with the scores they
        # have now (a later page shows them as the first did, unless turns were stored since).
        marks = ", ".join("?" * len(among))
        sql = f"SELECT {COLUMNS} FROM interactions WHERE user_id = ? AND interaction_id IN "
        sql += f"({marks})"
        found = await self._select(sql, (request.user_id, *among), tenant=request.user_id)
        if request.query is None or not found:
            return Matches(interactions=found)
        again = await self._search(request, len(among) + 2 * candidates, candidates)
        scores = {turn.interaction_id: turn.score for turn in again.interactions}
        return Matches(
            interactions=[
                turn.model_copy(update={"score": scores.get(turn.interaction_id)}) for turn in found
            ],
            search_mode=again.search_mode,
        )

    async def _search(self, request: SearchRequest, limit: int, candidates: int) -> Matches:
        """The `limit` best matches of `request`, best first, from the best `candidates` of
        each kind."""

        def conditions(table: str) -> tuple[str, list[Any]]:
            where, params = _window(request.user_id, request.start_time, request.end_time, table)
            if request.request_id:
                where += f" AND {table}request_id = ?"
                params.append(request.request_id)
            return where, params

        if request.query is None:
            where, params = conditions("i.")
            sql = (
                f"SELECT {COLUMNS_OF_I} FROM interactions i WHERE {where} ORDER BY {I_NEWEST_FIRST}"
            )
            found = await self._select(f"{sql} LIMIT ?", (*params, limit), tenant=request.user_id)
            return Matches(interactions=found)
        query = request.query
        vocabulary = self._vocabulary(query=True)
        mode: SearchMode = request.search_mode
        notes: list[str] = []
        query_vector: Vectors | None = None
        # The query is embedded first, then one read ranks: reading the words beside the
        # embedding saved nothing when it had the machine's cores (spare_cores.py).
        if mode != "fts":
            query_vector = await anyio.to_thread.run_sync(
                self._embedder.query, query, abandon_on_cancel=True
            )
            if query_vector is None:
                notes.append(f"searched by words only: {self._embedder.unavailable}")
                mode = "fts"
        narrowed = bool(request.start_time or request.end_time or request.request_id)
        months = time_cues.months_named(query)

        def ranked(db: sqlite3.Connection) -> list[Interaction]:
            user_key = _user_key(db, request.user_id)
            if user_key is None:
                return []
            words: Ranked = []
            if mode != "vector":
                words = search.word_matches(db, vocabulary, user_key, query, conditions, candidates)
            meaning: Ranked = []
            if query_vector is not None:
                meaning = search.meaning_matches(
                    db,
                    self._vectors,
                    user_key,
                    query_vector,
                    conditions,
                    candidates,
                    narrowed=narrowed,
                )
                busy = self._indexer.busy
                pending = search.pending_turns(db, request.user_id, user_key) if busy else 0
                if pending >= search.PENDING_NOTE_TURNS:
                    notes.append(
                        f"{pending} of the user's turns are not yet indexed for meaning (done in "
                        "the background): until then they are found by words only"
                    )
            hits = [
                (rowid, round(score, 2))
                for rowid, score in search.rank(db, mode, words, meaning, conditions, months)
            ]
            if request.threshold is not None:
                hits = [(rowid, score) for rowid, score in hits if score >= request.threshold]
            hits = hits[:limit]
            marks = ", ".join("?" * len(hits))
            rows = db.execute(
                f"SELECT {COLUMNS} FROM interactions WHERE interaction_id IN ({marks})",
                [rowid for rowid, _ in hits],
            ).fetchall()
            by_id = {row[0]: _interaction(row) for row in rows}
            return [
                by_id[rowid].model_copy(update={"score": score})
                for rowid, score in hits
                if rowid in by_id
            ]

        best = await self._file.read(ranked, tenant=request.user_id)
        # As Reflexio: most_recent_k keeps the k best matches, shown newest first.
        best = newest_first(best) if request.most_recent_k else best
        return Matches(interactions=best, search_mode=mode, notes=notes)

    async def get_all_interactions(
        self, limit: int, after: Keyset | None = None
    ) -> list[Interaction]:
        where, params = _within_keyset("1", [], after)
        sql = f"SELECT {COLUMNS} FROM interactions WHERE {where} ORDER BY {NEWEST_FIRST} LIMIT ?"
        return await self._select(sql, (*params, limit), tenant=None)

    async def find_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        sql = f"SELECT {COLUMNS} FROM interactions WHERE interaction_id = ? AND user_id = ?"
        found = await self._select(sql, (interaction_id, user_id), tenant=user_id)
        if not found:
            raise not_found(user_id, interaction_id)
        return found[0]

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        vocabulary = self._vocabulary(query=False)

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
            db.execute("DELETE FROM turn_vectors WHERE interaction_id = ?", (interaction_id,))
            user_key = _user_key(db, user_id)
            if user_key is not None:
                texts = [row[COLUMN_NAMES.index(column)] for column in WORD_COLUMNS]
                unindex_turn(db, vocabulary, user_key, interaction_id, texts)
            return deleted

        deleted = await self._file.write(delete)
        if deleted is None:
            raise not_found(user_id, interaction_id)
        self._vectors.forget()
        return deleted

    async def session_interactions(
        self, user_id: str, session_id: str, top_k: int
    ) -> list[Interaction]:
        sql = (
            f"SELECT {COLUMNS_OF_I} FROM publishes p JOIN interactions i "
            "ON i.request_id = p.request_id WHERE p.user_id = ? AND p.session_id = ? "
            f"AND i.user_id = ? ORDER BY {I_NEWEST_FIRST} LIMIT ?"
        )
        return await self._select(sql, (user_id, session_id, user_id, top_k), tenant=user_id)

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

        found = await self._file.read(page, tenant=user_id)
        return SessionPage(sessions=found[:limit], has_more=len(found) > limit)

    async def session_ids(self, user_id: str, prefix: str, limit: int) -> KnownIds:
        sql = (
            "SELECT p.session_id, count(*) OVER () FROM publishes p WHERE p.user_id = ? "
            "AND substr(p.session_id, 1, ?) = ? AND EXISTS (SELECT 1 FROM interactions i "
            "WHERE i.request_id = p.request_id) GROUP BY p.session_id "
            "ORDER BY max(p.published_at) DESC, p.session_id DESC LIMIT ?"
        )
        return await self._known(sql, (user_id, len(prefix), prefix, limit), tenant=user_id)

    async def user_ids(self, prefix: str, limit: int) -> KnownIds:
        sql = (
            "SELECT user_id, count(*) OVER () FROM interactions WHERE substr(user_id, 1, ?) = ? "
            "GROUP BY user_id ORDER BY max(created_at) DESC, max(interaction_id) DESC LIMIT ?"
        )
        return await self._known(sql, (len(prefix), prefix, limit), tenant=None)

    async def _known(self, sql: str, params: Sequence[Any], *, tenant: str | None) -> KnownIds:
        def select(db: sqlite3.Connection) -> KnownIds:
            rows = db.execute(sql, params).fetchall()
            total = int(rows[0][1]) if rows else 0
            return KnownIds(
                values=[str(row[0]) for row in rows], total=total, has_more=total > len(rows)
            )

        return await self._file.read(select, tenant=tenant)

    def watch_stored(self, listener: StoredListener) -> Callable[[], None]:
        """Every publish here is stored at once (never queued): nothing to tell later."""
        return _nothing

    async def status(self, user_id: str, *, store_wide: bool = True) -> BackendStatus:
        def count(db: sqlite3.Connection) -> tuple[int | None, int | None, int]:
            if not store_wide:
                (mine,) = db.execute(
                    "SELECT count(*) FROM interactions WHERE user_id = ?", (user_id,)
                ).fetchone()
                return None, None, int(mine)
            interactions, users, mine = db.execute(
                "SELECT count(*), count(DISTINCT user_id), count(*) FILTER (WHERE user_id = ?) "
                "FROM interactions",
                (user_id,),
            ).fetchone()
            return int(interactions), int(users), int(mine)

        interactions, users, mine = await self._file.read(count, tenant=user_id)

        def meaning(db: sqlite3.Connection) -> MeaningIndex:
            if store_wide:
                pending = search.pending_turns(db)
                stored = interactions or 0
            else:
                user_key = _user_key(db, user_id)
                pending = 0 if user_key is None else search.pending_turns(db, user_id, user_key)
                stored = mine
            return MeaningIndex(
                model=self._embedder.model,
                unavailable=self._embedder.unavailable,
                indexed=stored - pending,
                pending=pending,
            )

        return BackendStatus(
            meaning_index=await self._file.read(meaning, tenant=user_id),
            backend="embedded",
            location=str(self.path),
            reachable=True,
            learning=self.learns,
            user_interactions=mine,
            interactions=interactions,
            users=users,
            detail=f"Interactions are {NO_LEARNING}.",
        )

    async def _select(
        self, sql: str, params: Sequence[Any], *, tenant: str | None
    ) -> list[Interaction]:
        """`tenant`: the user the read is for (see SqliteFile.read)."""

        def select(db: sqlite3.Connection) -> list[Interaction]:
            return [_interaction(row) for row in db.execute(sql, params)]

        return await self._file.read(select, tenant=tenant)

    # Added by the answers branch (issue 18, item 4): the queries live in neighbours.py.
    async def session_neighbours(
        self, user_id: str, interactions: Sequence[Interaction], turns: int
    ) -> dict[int, list[Interaction]]:
        def read(db: sqlite3.Connection) -> dict[int, list[Interaction]]:
            return session_neighbours(
                db, user_id, interactions, turns, columns=COLUMNS_OF_I, decode=_interaction
            )

        return await self._file.read(read, tenant=user_id)


def _nothing() -> None:
    pass


def _user_key(db: sqlite3.Connection, user_id: str) -> int | None:
    row = db.execute("SELECT user_key FROM user_keys WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else int(row[0])


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
    data = dict(zip((*COLUMN_NAMES, "session_id"), row, strict=True))
    data["session_id"] = data["session_id"] or ""
    try:
        data["tools_used"] = json.loads(data["tools_used"])
    except (TypeError, ValueError):  # written by hand, or by something else: show nothing
        data["tools_used"] = []
    return Interaction.model_validate(data)
