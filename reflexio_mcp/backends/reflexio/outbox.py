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
sent). A damaged file (SQLite's error, or integrity_check at open) is salvaged: every row that can
still be read whole is copied into a fresh file (outbox_salvage), which then takes its place;
the damaged file is kept beside it (`.damaged-<time>`), and what was and was not read back is
logged and reported (`salvage`). Damage met while running is salvaged the same way and the
transaction that met it runs again on the fresh file. Each write first checks that the file
at the path is still the one it has open (another process may have salvaged it) under a
shared lock on the folder, which a salvage holds exclusively; if not, it reopens.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import anyio

from reflexio_mcp.backends.reflexio.salvage import COLUMNS, Readable, read_damaged
from reflexio_mcp.backends.sqlite_file import (
    BUSY_TIMEOUT_SECONDS,
    SqliteFile,
    Work,
    check_intact,
    damage,
    store_error,
)
from reflexio_mcp.core import defaults
from reflexio_mcp.core.errors import OutboxFull, StoreCorrupt, StoreError, StoreReadOnly
from reflexio_mcp.core.models import OutboxSalvage, PublishRequest, iso_time

logger = logging.getLogger(__name__)

FILE_NAME = "outbox.sqlite3"
SCHEMA_VERSION = 1
MAX_ROWS = defaults.OUTBOX_MAX_ROWS
MAX_BYTES = int(defaults.OUTBOX_MAX_MB * 2**20)
KEEP_DELIVERED_SECONDS = 7 * 86_400
"""Delivered rows (bookkeeping only) answer get_publish_status this long."""
LABEL = "the outbox"
_T = TypeVar("_T")

State = Literal["queued", "delivered", "failed"]
HEADS_ITS_SESSION = (
    "NOT EXISTS (SELECT 1 FROM outbox e WHERE e.target = o.target AND e.state = 'queued' "
    "AND e.user_id = o.user_id AND e.session_id = o.session_id AND e.seq < o.seq)"
)
"""SQL: row `o` is the oldest queued row of its user and session (only such rows are sent)."""
SENDING_ELSEWHERE = (
    "SELECT 1 FROM outbox WHERE target = ? AND state = 'queued' AND owner IS NOT NULL "
    "AND owner != ? AND lease_until >= ? LIMIT 1"
)
"""SQL (target, owner, now): another process holds a live claim on a row for this target.
Processes sharing an outbox send one publish at a time between them, as each does within
itself: Reflexio 0.2.32 can lock up for good under concurrent publishes."""
OTHER_SENDER_POLL_SECONDS = 0.2
"""While another process sends, look again this often (its send usually takes milliseconds)."""

SCHEMA = [
    """
    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        target          TEXT NOT NULL,
        request_id      TEXT NOT NULL,
        user_id         TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        body            BLOB,
        bytes           INTEGER NOT NULL,
        turns           INTEGER NOT NULL,
        wait            INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'failed')),
        queued_at       REAL NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        server_errors   INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_attempt_at REAL,
        last_error      TEXT,
        done_at         REAL,
        owner           TEXT,
        lease_until     REAL,
        UNIQUE (target, request_id)
    )
    """,
    "CREATE INDEX outbox_sessions ON outbox (target, state, user_id, session_id, seq)",
    "CREATE INDEX outbox_done ON outbox (state, done_at)",
]


@dataclass(frozen=True)
class Row:
    """A queued publish, as the deliverer sends it."""

    seq: int
    request_id: str
    user_id: str
    session_id: str
    body: bytes
    wait_for_response: bool
    attempts: int
    server_errors: int


@dataclass(frozen=True)
class Entry:
    """What the outbox knows of one publish, for get_publish_status."""

    request_id: str
    user_id: str
    state: State
    turns: int
    attempts: int
    queued_at: float
    done_at: float | None
    last_attempt_at: float | None
    next_attempt_at: float | None
    last_error: str | None
    ahead: int
    """Queued publishes before this one, of every session (0 when it is not queued)."""


@dataclass(frozen=True)
class Enqueued:
    """The outcome of journaling a publish.

    new: journaled now; `claimed` when this process may send it at once (it heads its
    session). waiting / delivered: this request_id was journaled before (nothing twice).
    clash: this request_id was journaled for another user (nothing journaled).
    """

    outcome: Literal["new", "waiting", "delivered", "clash"]
    seq: int
    claimed: bool
    ahead: int
    sending_elsewhere: bool = False
    """Not claimed because another process sharing the outbox is sending to this target."""


@dataclass(frozen=True)
class Stats:
    path: Path
    waiting: int
    waiting_bytes: int
    oldest_queued_at: float | None
    failed: int
    last_error: str | None
    other_targets: dict[str, int]
    """Rows waiting for another Reflexio URL (an earlier REFLEXIO_URL), by URL."""


def owner_token() -> str:
    """This process, as written in the claims it holds."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner: str, mine: str) -> bool:
    if owner == mine:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's claim: only its lease can free it
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # an earlier outbox of this very process (closed without releasing)
    if os.name == "nt":  # os.kill(pid, 0) there would send Ctrl-C: rely on the lease
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


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
        self._busy_seconds = busy_seconds
        self._file = self._new_file()
        self._inode = 0
        """The inode at the path when `_file` was opened: another one there means another
        process salvaged the file (moved it aside) and `_file` must be reopened."""
        self._swapping = anyio.Lock()
        self.salvage: OutboxSalvage | None = None
        """What the last replacement of a damaged file read back from it (this process)."""

    def __repr__(self) -> str:
        return f"Outbox(path={str(self.path)!r}, target={self.target!r})"

    def _new_file(self) -> SqliteFile:
        return SqliteFile(
            self.path,
            self._prepare,
            busy_seconds=self._busy_seconds,
            label=LABEL,
            synchronous="FULL",
        )

    async def __aenter__(self) -> Self:
        try:
            await self._open_file()
        except StoreCorrupt as err:
            await self._salvage_damaged(str(err.__cause__ or err))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._file.__aexit__(exc_type, exc, tb)

    async def replace_damaged(self, reason: str) -> OutboxSalvage | None:
        """Close the damaged file, salvage it into a fresh one and open that; what was read."""
        async with self._swapping:
            await self._file.__aexit__(None, None, None)
            return await self._salvage_damaged(reason)

    async def _salvage_damaged(self, reason: str) -> OutboxSalvage | None:
        salvage = await anyio.to_thread.run_sync(self._salvage_once, reason)
        if salvage is not None:
            logger.error("%s", salvage.detail)
            self.salvage = salvage
        await self._open_file()
        return salvage

    async def _open_file(self) -> None:
        self._inode = _inode(self.path)  # before the open: a swap in between reopens again
        self._file = self._new_file()
        await self._file.__aenter__()

    async def _write(self, work: Work[_T]) -> _T:
        return await self._run(work, write=True)

    async def _read(self, work: Work[_T]) -> _T:
        return await self._run(work, write=False)

    async def _run(self, work: Work[_T], *, write: bool) -> _T:
        """Run `work` on the outbox file as it is now at the path. Damage found on the way is
        salvaged (as at open) and `work` runs again on the fresh file: a publish journaled
        now, or a row's fate recorded now, lands there instead of failing. A file another
        process salvaged (moved aside) is reopened first."""
        for last in (False, True):
            file, inode = await self._current_file()
            try:
                if write:
                    return await file.write(
                        functools.partial(self._in_place, inode=inode, work=work)
                    )
                return await file.read(work)
            except _Replaced:
                if last:
                    raise StoreError(
                        f"{LABEL} {self.path} was replaced twice while in use; try again"
                    ) from None
            except StoreCorrupt as err:
                if last:
                    raise
                await self._replace(file, str(err.__cause__ or err))
            except StoreError:
                if last or (file is self._file and not self._swapping.locked()):
                    raise
                async with self._swapping:  # replaced while it ran: once more, on the new file
                    pass
        raise AssertionError("unreachable")

    def _in_place(self, db: sqlite3.Connection, *, inode: int, work: Work[_T]) -> _T:
        """`work`, in its write transaction, while the file it writes is still the one at the
        path: a salvage (which holds the folder's lock exclusively) waits for it to end, and
        one that ended since the file was opened makes it run again on the fresh file."""
        with _shared(self.path.parent):
            if _inode(self.path) != inode:
                raise _Replaced
            return work(db)

    async def _current_file(self) -> tuple[SqliteFile, int]:
        if _inode(self.path) != self._inode:
            async with self._swapping:
                if _inode(self.path) != self._inode:
                    logger.info("%s %s was replaced by another process: reopening it", LABEL,
                                self.path)  # fmt: skip
                    await self._file.__aexit__(None, None, None)
                    await self._open_file()
        return self._file, self._inode

    async def _replace(self, damaged: SqliteFile, reason: str) -> None:
        """Salvage `damaged`, unless another task of this process replaced it already."""
        async with self._swapping:
            if self._file is damaged:
                await damaged.__aexit__(None, None, None)
                await self._salvage_damaged(reason)

    def _salvage_once(self, reason: str) -> OutboxSalvage | None:
        """Salvage, unless another process sharing the folder did it first (None): processes
        salvage one at a time, and each looks again once its turn comes."""
        with _exclusive(self.path.parent):
            if self._intact():
                return None
            return self._salvage_into_fresh(reason)

    def _intact(self) -> bool:
        try:
            db = sqlite3.connect(self.path, timeout=self._busy_seconds)
        except sqlite3.Error:
            return False
        try:
            check_intact(db, thorough=True)
        except (sqlite3.Error, UnicodeDecodeError):
            return False
        finally:
            db.close()
        return True

    def _salvage_into_fresh(self, reason: str) -> OutboxSalvage:
        """Copy every whole row of the damaged file into a new file, then keep the damaged
        one under a `.damaged-` name and put the new one in its place. Until that swap the
        damaged file stays where it is, so a crash half-way salvages again at the next open.

        Raises:
            StoreReadOnly: the new file cannot be written or the files cannot be renamed.
        """
        readable = self._read_damaged()
        fresh = self.path.with_name(f"{self.path.name}.salvaging-{uuid.uuid4().hex[:8]}")
        try:
            os.close(os.open(fresh, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            kept = self._write_fresh(fresh, readable)
            aside = self._swap_in(fresh)
        except OSError as err:
            raise StoreReadOnly(
                f"{LABEL} {self.path} is damaged ({reason}) and could not be replaced "
                f"({err.strerror or err}): make {self.path.parent} writable by this user, or "
                "set REFLEXIO_MCP_DATA_DIR to another folder"
            ) from None
        except sqlite3.Error as err:
            raise store_error(err, fresh, label="the salvaged outbox") from err
        finally:  # a copy left by a failed salvage; the damaged file itself was not touched
            with contextlib.suppress(OSError):
                fresh.unlink(missing_ok=True)
        return _report(self.path, reason, aside, kept, readable)

    def _read_damaged(self) -> Readable:
        try:
            db = sqlite3.connect(self.path, timeout=self._busy_seconds, isolation_level=None)
        except sqlite3.Error:
            return Readable()
        try:
            db.execute("PRAGMA query_only = ON")
            # Reads a file shorter than its header says (truncated), as SQLite's own recovery.
            db.execute("PRAGMA writable_schema = ON")
            return read_damaged(db)
        except (sqlite3.Error, UnicodeDecodeError):
            return Readable()  # not even its header can be read
        finally:
            db.close()

    def _write_fresh(self, fresh: Path, readable: Readable) -> list[dict[str, Any]]:
        """The new outbox file with the readable rows; the rows it took. Claims are kept: a
        process still sending a row records its fate in the fresh file (only the claim's owner
        can), and no other sends it meanwhile; a dead owner's claim is freed as ever."""
        kept: list[dict[str, Any]] = []
        db = sqlite3.connect(fresh, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            _create_schema(db)
            insert = (
                f"INSERT INTO outbox ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})"
            )
            for row in readable.rows:
                try:
                    db.execute(insert, [row[name] for name in COLUMNS])
                except sqlite3.IntegrityError:  # damage made two rows of one request_id
                    readable.unreadable_seqs.add(row["seq"])
                    readable.unreadable_request_ids.add(row["request_id"])
                    continue
                kept.append(row)
            db.execute("COMMIT")
        finally:
            db.close()
        return kept

    def _swap_in(self, fresh: Path) -> Path:
        """Keep the damaged file (and its -wal and -shm) as `.damaged-<time>` and put `fresh`
        in its place; the new name. A hard link keeps a file at the path throughout."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        linked = True
        try:
            os.link(self.path, aside)
        except FileNotFoundError:
            pass  # nothing at the path (another process replaced it): nothing to keep
        except OSError:  # no hard links on this file system
            self.path.rename(aside)
            linked = False
        moved: list[tuple[Path, Path]] = []
        for suffix in ("-wal", "-shm"):  # they belong to the damaged file, never the new one
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.rename(aside.with_name(aside.name + suffix))
                moved.append((source, aside.with_name(aside.name + suffix)))
        try:
            os.replace(fresh, self.path)
        except OSError:  # put the damaged file back as it was: the next open tries again
            for source, kept in moved:
                kept.rename(source)
            if linked:
                aside.unlink(missing_ok=True)
            elif not self.path.exists():
                aside.rename(self.path)
            raise
        if os.name != "nt":
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        return aside

    def moved_aside(self) -> list[Path]:
        """Damaged outbox files moved aside so far, in this folder."""
        return sorted(
            p
            for p in self.path.parent.glob(f"{self.path.name}.damaged-*")
            if not p.name.endswith(("-wal", "-shm"))
        )

    def _prepare(self, db: sqlite3.Connection) -> None:
        check_intact(db, thorough=True)  # the outbox is small: its indexes are checked too
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version == 0:
            _create_schema(db)
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
                return None
            seq, request_id, user_id, session_id, body, wait, attempts, server_errors = row
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
            if not _owner_alive(owner, self.owner):
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


class _Replaced(Exception):
    """The outbox file at the path is not the one this write transaction is on."""


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0  # nothing there for a moment: the open that follows creates or finds it


def _exclusive(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive advisory lock on `folder` (flock, which POSIX systems allow on a
    folder too: no lock file is left behind): a salvage."""
    return _folder_lock(folder, shared=False)


def _shared(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold a shared lock on `folder`: a write, which a salvage must not run beside."""
    return _folder_lock(folder, shared=True)


@contextlib.contextmanager
def _folder_lock(folder: Path, *, shared: bool) -> Generator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: rely on the rename being refused while the file is open
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _report(
    path: Path, reason: str, aside: Path, kept: list[dict[str, Any]], readable: Readable
) -> OutboxSalvage:
    waiting = sum(row["state"] == "queued" for row in kept)
    failed = sum(row["state"] == "failed" for row in kept)
    lost = len(readable.unreadable_seqs)
    names = sorted(readable.unreadable_request_ids)[:20]
    ranges = readable.unknown_ranges
    if kept:
        got = (
            f"{len(kept)} row(s) were read back whole into a fresh outbox: {waiting} waiting "
            f"publish(es), delivered in the background, {failed} failed"
        )
    else:
        got = "nothing in it could be read back: a fresh, empty outbox was started"
    if not (kept or lost or ranges):
        ranges = readable.unknown_ranges = [(1, 2**63 - 1)]  # not even how many rows it held
    missed = f"{lost} row(s) known to be in it could not be read" if lost else ""
    if names:
        missed += f" (request_id {', '.join(names)}{', ...' if lost > len(names) else ''})"
    if ranges:
        spans = ", ".join(_span(low, high) for low, high in ranges[:5])
        missed += (
            f"{'; ' if missed else ''}rows numbered {spans}{', ...' if len(ranges) > 5 else ''}"
            ", if any, could not be read"
        )
    detail = (
        f"{LABEL} {path} was damaged ({reason}); {got}; "
        f"{missed or 'every row it held was read back'}. The damaged file is kept as {aside}"
    )
    return OutboxSalvage(
        damage=reason, moved_to=str(aside), at=iso_time(int(time.time())), salvaged=len(kept),
        waiting=waiting, failed=failed, unreadable=lost, unreadable_request_ids=names,
        unknown_seq_ranges=ranges, detail=detail,
    )  # fmt: skip


def _span(low: int, high: int) -> str:
    if low == high:
        return str(low)
    return f"{low} and above" if high >= 2**63 - 1 else f"{low}-{high}"


def _ahead(db: sqlite3.Connection, target: str, seq: int) -> int:
    (count,) = db.execute(
        "SELECT count(*) FROM outbox WHERE target = ? AND state = 'queued' AND seq < ?",
        (target, seq),
    ).fetchone()
    return int(count)
