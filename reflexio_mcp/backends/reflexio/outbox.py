"""The outbox: publishes kept on disk until Reflexio confirms them.

One SQLite file (`outbox.sqlite3` in the data folder; WAL, synchronous=FULL) holds each
publish bound for Reflexio from before it is sent until Reflexio confirms it. A row is:

    queued     waiting, or being sent by the process that holds its claim
    delivered  Reflexio confirmed it; only the bookkeeping is kept (body dropped) for a week
    failed     Reflexio refused it for good (400/401/403/422, or a row it kept failing on:
               `row_error` counts those in server_errors, up to the deliverer's limit);
               kept whole, with the reason

Rows are sent oldest first within each (user, session): a row is claimable only when no
older queued row of its session exists. A claim is a lease: the process that claims a row
writes its owner token and a deadline in the same transaction, so two processes sharing the
file never send one row at once; a claim whose owner died (same host, pid gone) or whose
lease ran out is free again. Reflexio stores a request_id once, so a row sent again after an
unconfirmed attempt is answered "already exists" and counts as delivered.

The queue is bounded in rows and bytes (queued and failed rows count: both hold what a user
sent). The file itself survives damage and other processes' salvage (outbox_file.py).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from reflexio_mcp.backends.reflexio.outbox_file import OutboxFile
from reflexio_mcp.backends.reflexio.outbox_rows import (
    FILE_NAME,
    HEADS_ITS_SESSION,
    KEEP_DELIVERED_SECONDS,
    MAX_BYTES,
    MAX_ROWS,
    OTHER_SENDER_POLL_SECONDS,
    SCHEMA,
    SCHEMA_VERSION,
    SENDING_ELSEWHERE,
    Enqueued,
    Entry,
    Row,
    Stats,
    create_schema,
    owner_alive,
    owner_token,
)
from reflexio_mcp.backends.reflexio.salvage import COLUMNS
from reflexio_mcp.backends.sqlite_file import BUSY_TIMEOUT_SECONDS, Work, check_intact, damage
from reflexio_mcp.core.errors import OutboxFull, StoreError
from reflexio_mcp.core.models import PublishRequest
from reflexio_mcp.core.status import OutboxSalvage

__all__ = ["FILE_NAME", "SCHEMA", "Enqueued", "Entry", "Outbox", "Row", "Stats"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class Outbox:
    """The durable queue of publishes for one Reflexio URL (`target`). Use as an async
    context manager; every method raises StoreError subclasses when the file fails."""

    def __init__(
        self,
        data_dir: Path,
        target: str,
        *,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
        busy_seconds: float = BUSY_TIMEOUT_SECONDS,
        owner: str | None = None,
    ) -> None:
        self.path = data_dir / FILE_NAME
        self.target = target
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.owner = owner or owner_token()
        self._file = OutboxFile(self.path, self._prepare, busy_seconds=busy_seconds)

    def __repr__(self) -> str:
        return f"Outbox(path={str(self.path)!r}, target={self.target!r})"

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

    @property
    def salvage(self) -> OutboxSalvage | None:
        """What the last replacement of a damaged file read back from it (this process)."""
        return self._file.salvage

    async def replace_damaged(self, reason: str) -> OutboxSalvage | None:
        """Close the damaged file, salvage it into a fresh one and open that; what was read."""
        return await self._file.replace_damaged(reason)

    def moved_aside(self) -> list[Path]:
        """Damaged outbox files moved aside so far, in this folder."""
        return self._file.moved_aside()

    async def _write(self, work: Work[_T]) -> _T:
        return await self._file.write(work)

    async def _read(self, work: Work[_T]) -> _T:
        return await self._file.read(work)

    def _prepare(self, db: sqlite3.Connection) -> None:
        check_intact(db, thorough=True)  # the outbox is small: its indexes are checked too
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version == 0:
            create_schema(db)
        elif version == SCHEMA_VERSION:
            columns = tuple(name for _, name, *_ in db.execute("PRAGMA table_info(outbox)"))
            if columns != COLUMNS:
                raise damage(f"its outbox table has the columns {columns}, not {COLUMNS}")
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer reflexio-mcp (outbox schema {version}); "
                "upgrade reflexio-mcp or point REFLEXIO_MCP_DATA_DIR elsewhere"
            )

    async def enqueue(
        self, request: PublishRequest, body: bytes, *, wait_for_response: bool, lease: float | None
    ) -> Enqueued:
        """Journal a publish. With `lease`, claim it at once for that many seconds when it
        heads its session (no older queued row of the same user and session).

        Raises:
            OutboxFull: the rows or bytes cap would be passed; nothing was journaled.
        """
        now = time.time()

        def journal(db: sqlite3.Connection) -> Enqueued:
            earlier = db.execute(
                "SELECT seq, user_id, state FROM outbox WHERE target = ? AND request_id = ?",
                (self.target, request.request_id),
            ).fetchone()
            if earlier is not None:
                seq, user_id, state = earlier
                if user_id != request.user_id:
                    return Enqueued("clash", seq, claimed=False, ahead=0)
                if state == "queued":
                    return Enqueued(
                        "waiting", seq, claimed=False, ahead=_ahead(db, self.target, seq)
                    )
                if state == "delivered":
                    return Enqueued("delivered", seq, claimed=False, ahead=0)
                db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))  # sent again: a new try
            self._check_room(db, len(body))
            ahead = int(
                db.execute(
                    "SELECT count(*) FROM outbox WHERE target = ? AND state = 'queued' AND "
                    "user_id = ? AND session_id = ?",
                    (self.target, request.user_id, request.session_id),
                ).fetchone()[0]
            )
            elsewhere = lease is not None and ahead == 0 and self._sending_elsewhere(db, now)
            claim = lease is not None and ahead == 0 and not elsewhere
            cursor = db.execute(
                "INSERT INTO outbox (target, request_id, user_id, session_id, body, bytes, turns, "
                "wait, state, queued_at, next_attempt_at, attempts, last_attempt_at, owner, "
                "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (self.target, request.request_id, request.user_id, request.session_id, body,
                 len(body), len(request.interaction_data_list), int(wait_for_response), now, now,
                 1 if claim else 0, now if claim else None, self.owner if claim else None,
                 now + lease if claim and lease is not None else None),
            )  # fmt: skip
            return Enqueued(
                "new", int(cursor.lastrowid or 0), claimed=claim, ahead=ahead,
                sending_elsewhere=elsewhere,
            )  # fmt: skip

        return await self._write(journal)

    def _check_room(self, db: sqlite3.Connection, size: int) -> None:
        rows, used, failed = db.execute(
            "SELECT count(*), coalesce(sum(bytes), 0), count(*) FILTER (WHERE state = 'failed') "
            "FROM outbox WHERE state != 'delivered'"
        ).fetchone()
        if rows + 1 <= self.max_rows and used + size <= self.max_bytes:
            return
        kept = f" and {failed} failed one(s) are kept" if failed else ""
        cap = f"the cap is {self.max_rows} publishes and {self.max_bytes / 2**20:g} MiB"
        raise OutboxFull(
            f"not stored: the outbox {self.path} is full ({rows - failed} publish(es) wait for "
            f"Reflexio at {self.target}{kept}, {used / 2**20:.1f} MiB; {cap}). Nothing was "
            "dropped: publish this again once Reflexio has taken the waiting ones "
            "(reflexio://status shows the queue), or raise REFLEXIO_MCP_OUTBOX_MAX_ROWS / "
            "REFLEXIO_MCP_OUTBOX_MAX_MB",
            for_one_user=(
                f"not stored: the outbox of this server's publishes to Reflexio, shared by all "
                f"its users, is full ({cap}). Nothing was dropped: publish this again once "
                "Reflexio has taken the waiting ones, or ask the server's operator to raise "
                "REFLEXIO_MCP_OUTBOX_MAX_ROWS / REFLEXIO_MCP_OUTBOX_MAX_MB"
            ),
        )

    async def claim_next(self, lease: float) -> Row | None:
        """Claim the oldest due row that heads its session, for `lease` seconds."""
        now = time.time()

        def claim(db: sqlite3.Connection) -> Row | None:
            if self._sending_elsewhere(db, now):
                return None
            row = db.execute(
                "SELECT seq, request_id, user_id, session_id, body, wait, attempts, "
                "server_errors FROM outbox o WHERE target = ? AND state = 'queued' "
                "AND next_attempt_at <= ? AND (owner IS NULL OR lease_until < ?) "
                f"AND {HEADS_ITS_SESSION} ORDER BY seq LIMIT 1",
                (self.target, now, now),
            ).fetchone()
            if row is None:
                self._check_index_holds_queue(db)
                return None
            seq, request_id, user_id, session_id, body, wait, attempts, server_errors = row
            if not isinstance(body, bytes):  # the index says queued, the table's row was sent
                raise damage(f"its index names row {seq} queued, which has no body")
            db.execute(
                "UPDATE outbox SET owner = ?, lease_until = ?, attempts = attempts + 1, "
                "last_attempt_at = ? WHERE seq = ?",
                (self.owner, now + lease, now, seq),
            )
            return Row(
                seq, request_id, user_id, session_id, bytes(body), bool(wait), attempts + 1,
                server_errors,
            )  # fmt: skip

        return await self._write(claim)

    def _check_index_holds_queue(self, db: sqlite3.Connection) -> None:
        """Raise the damage error unless the index claim_next walks names every queued row:
        a damaged index can lose entries or end the walk early, silently (integrity_check
        runs only at open), and those rows would wait unclaimed until a restart. Raised, the
        file is salvaged and the claim made again in the fresh one."""
        sql = "SELECT count(*) FROM outbox {} WHERE target = ? AND state = 'queued'"
        walked, held = (
            db.execute(sql.format(how), (self.target,)).fetchone()[0]
            for how in ("INDEXED BY outbox_sessions", "NOT INDEXED")
        )
        if walked != held:
            raise damage(f"its index names {walked} queued row(s), its table holds {held}")

    def _sending_elsewhere(self, db: sqlite3.Connection, now: float) -> bool:
        self._free_dead_claims(db)
        return db.execute(SENDING_ELSEWHERE, (self.target, self.owner, now)).fetchone() is not None

    def _free_dead_claims(self, db: sqlite3.Connection) -> None:
        owners = [
            owner
            for (owner,) in db.execute(
                "SELECT DISTINCT owner FROM outbox WHERE state = 'queued' AND owner IS NOT NULL"
            )
        ]
        for owner in owners:
            if not owner_alive(owner, self.owner):
                db.execute(
                    "UPDATE outbox SET owner = NULL, lease_until = NULL WHERE owner = ?", (owner,)
                )

    async def delivered(self, seq: int) -> None:
        """Reflexio confirmed the row: drop its body, keep its bookkeeping for a week."""
        now = time.time()

        def finish(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET state = 'delivered', body = NULL, bytes = 0, done_at = ?, "
                "owner = NULL, lease_until = NULL, last_error = NULL WHERE seq = ?",
                (now, seq),
            )
            db.execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND done_at < ?",
                (now - KEEP_DELIVERED_SECONDS,),
            )

        await self._write(finish)

    async def failed(self, seq: int, reason: str) -> None:
        """Reflexio refused the row for good: keep it whole, with the reason. Only while this
        process holds its claim: a late answer to a lapsed claim changes nothing."""
        now = time.time()
        await self._write(
            lambda db: db.execute(
                "UPDATE outbox SET state = 'failed', done_at = ?, last_error = ?, owner = NULL, "
                "lease_until = NULL WHERE seq = ? AND owner = ? AND state = 'queued'",
                (now, reason, seq, self.owner),
            )
        )

    async def retry_later(self, seq: int, error: str, *, after: float) -> None:
        """Release the claim; the row may be claimed again `after` seconds from now. Only
        while this process holds the claim."""
        now = time.time()
        await self._write(
            lambda db: db.execute(
                "UPDATE outbox SET owner = NULL, lease_until = NULL, last_error = ?, "
                "next_attempt_at = ? WHERE seq = ? AND owner = ? AND state = 'queued'",
                (error, now + after, seq, self.owner),
            )
        )

    async def row_error(self, seq: int, error: str, *, after: float, limit: int) -> bool:
        """The attempt failed because of this row (not of Reflexio as a whole): count it in
        `server_errors`; at `limit` of them the row is failed with `error`, else it is released
        to be claimed again `after` seconds from now. Only while this process holds the claim;
        True when the row was failed now."""
        now = time.time()

        def count(db: sqlite3.Connection) -> bool:
            found = db.execute(
                "SELECT server_errors FROM outbox WHERE seq = ? AND owner = ? AND state = 'queued'",
                (seq, self.owner),
            ).fetchone()
            if found is None:
                return False
            failed = found[0] + 1 >= limit
            db.execute(
                "UPDATE outbox SET server_errors = server_errors + 1, last_error = ?, "
                "owner = NULL, lease_until = NULL, state = ?, done_at = ?, next_attempt_at = ? "
                "WHERE seq = ?",
                (
                    error,
                    "failed" if failed else "queued",
                    now if failed else None,
                    now + after,
                    seq,
                ),
            )
            return failed

        return await self._write(count)

    async def forget(self, seq: int) -> None:
        """Remove a failed row whose caller was told (a publish refused as it was made)."""
        await self._write(
            lambda db: db.execute("DELETE FROM outbox WHERE seq = ? AND state = 'failed'", (seq,))
        )

    async def release_mine(self) -> None:
        """Free every claim this process holds (it is stopping)."""
        await self._write(
            lambda db: db.execute(
                "UPDATE outbox SET owner = NULL, lease_until = NULL WHERE owner = ?",
                (self.owner,),
            )
        )

    async def failed_rows(self) -> list[Entry]:
        """Every failed publish for this target, oldest first."""

        def find(db: sqlite3.Connection) -> list[Entry]:
            rows = db.execute(
                "SELECT request_id, user_id, turns, attempts, queued_at, done_at, "
                "last_attempt_at, last_error FROM outbox WHERE target = ? AND state = 'failed' "
                "ORDER BY seq",
                (self.target,),
            ).fetchall()
            return [
                Entry(rid, user, "failed", turns, attempts, queued, done, last, None, error, 0)
                for rid, user, turns, attempts, queued, done, last, error in rows
            ]

        return await self._read(find)

    async def retry_failed(self) -> int:
        """Queue every failed publish again, at the back, as new; return how many."""
        now = time.time()

        def requeue(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "SELECT * FROM outbox WHERE target = ? AND state = 'failed' ORDER BY seq",
                (self.target,),
            )
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            for row in rows:  # deleted, then inserted anew: a fresh seq, at the back
                db.execute("DELETE FROM outbox WHERE seq = ?", (row["seq"],))
                row.update(
                    state="queued", attempts=0, server_errors=0, next_attempt_at=now,
                    done_at=None, owner=None, lease_until=None,
                )  # fmt: skip
                del row["seq"]
                db.execute(
                    f"INSERT INTO outbox ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )
            return len(rows)

        return await self._write(requeue)

    async def drop_failed(self) -> int:
        """Delete every failed publish; return how many."""

        def drop(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM outbox WHERE target = ? AND state = 'failed'", (self.target,)
            )
            return cursor.rowcount

        return await self._write(drop)

    async def entry(self, user_id: str, request_id: str) -> Entry | None:
        """The outbox's record of a publish of `user_id`, if it holds one."""

        def find(db: sqlite3.Connection) -> Entry | None:
            row = db.execute(
                "SELECT seq, state, turns, attempts, queued_at, done_at, last_attempt_at, "
                "next_attempt_at, last_error FROM outbox WHERE target = ? AND request_id = ? "
                "AND user_id = ?",
                (self.target, request_id, user_id),
            ).fetchone()
            if row is None:
                return None
            seq, state, turns, attempts, queued_at, done_at, last_at, next_at, error = row
            queued = state == "queued"
            return Entry(
                request_id, user_id, state, turns, attempts, queued_at, done_at, last_at,
                next_at if queued else None, error, _ahead(db, self.target, seq) if queued else 0,
            )  # fmt: skip

        return await self._read(find)

    async def stats(self, user_id: str | None = None) -> Stats:
        """What the outbox holds; with `user_id`, that user's publishes only."""
        whose, mine = ("", ()) if user_id is None else (" AND user_id = ?", (user_id,))

        def count(db: sqlite3.Connection) -> Stats:
            waiting, size, oldest = db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0), min(queued_at) FROM outbox "
                "WHERE target = ? AND state = 'queued'" + whose,
                (self.target, *mine),
            ).fetchone()
            (failed,) = db.execute(
                "SELECT count(*) FROM outbox WHERE target = ? AND state = 'failed'" + whose,
                (self.target, *mine),
            ).fetchone()
            error = db.execute(
                "SELECT last_error FROM outbox WHERE target = ? AND last_error IS NOT NULL "
                f"AND state != 'delivered'{whose} ORDER BY last_attempt_at DESC LIMIT 1",
                (self.target, *mine),
            ).fetchone()
            others = dict(
                db.execute(
                    "SELECT target, count(*) FROM outbox WHERE target != ? AND state = 'queued'"
                    f"{whose} GROUP BY target",
                    (self.target, *mine),
                ).fetchall()
            )
            return Stats(
                self.path, waiting, size, oldest, failed, error[0] if error else None, others
            )

        return await self._read(count)

    async def next_due(self) -> float | None:
        """When the next queued row can be claimed (Unix time), if any waits."""
        now = time.time()

        def earliest(db: sqlite3.Connection) -> float | None:
            if db.execute(SENDING_ELSEWHERE, (self.target, self.owner, now)).fetchone():
                return now + OTHER_SENDER_POLL_SECONDS
            (due,) = db.execute(
                "SELECT min(max(next_attempt_at, coalesce(lease_until, 0))) FROM outbox o "
                f"WHERE target = ? AND state = 'queued' AND {HEADS_ITS_SESSION}",
                (self.target,),
            ).fetchone()
            return None if due is None else float(due)

        return await self._read(earliest)

    async def rows(self) -> list[dict[str, Any]]:
        """Every row without its body, oldest first (tests and diagnostics)."""

        def everything(db: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = db.execute(
                "SELECT seq, target, request_id, user_id, session_id, bytes, turns, state, "
                "attempts, server_errors, last_error, owner FROM outbox ORDER BY seq"
            )
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]

        return await self._read(everything)


def _ahead(db: sqlite3.Connection, target: str, seq: int) -> int:
    (count,) = db.execute(
        "SELECT count(*) FROM outbox WHERE target = ? AND state = 'queued' AND seq < ?",
        (target, seq),
    ).fetchone()
    return int(count)
