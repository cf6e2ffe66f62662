"""One SQLite file, opened safely and shared by worker threads.

- Owner-only: the folder 0700 and the file 0600 from the first byte (SQLite gives its -wal
  and -shm files the file's mode); loose permissions on an existing store are tightened.
- WAL with one writer connection and a small pool of read-only ones, so reads run beside one
  another and beside a write, and several processes can share the file.
- Every read has a time limit (SQLite's progress handler interrupts it), so one pathological
  query cannot hold a connection for minutes.
- One tenant (a user) has at most half the readers at once, so one user's heavy reads leave
  room for everyone else's.
- Every sqlite3 failure becomes a StoreError whose message names the file and the fix.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

import anyio

from reflexio_mcp.core.errors import (
    SearchTooSlow,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
)

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 10.0
READ_SECONDS = 5.0
"""A read running longer is interrupted (SearchTooSlow)."""
READERS = 4
PROGRESS_STEPS = 10_000
"""SQLite virtual-machine steps between two looks at a read's deadline (~1 ms of work)."""
_T = TypeVar("_T")
Work = Callable[[sqlite3.Connection], _T]


class SqliteFile:
    """A SQLite database file. Use as an async context manager.

    `prepare` runs once at open, inside a write transaction: it creates or migrates the
    schema. `read` and `write` run a function on a connection in a worker thread.
    """

    def __init__(
        self,
        path: Path,
        prepare: Callable[[sqlite3.Connection], None],
        *,
        read_seconds: float = READ_SECONDS,
        busy_seconds: float = BUSY_TIMEOUT_SECONDS,
        readers: int = READERS,
        label: str = "the embedded store",
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        self.path = path
        self.label = label
        """How messages name the file: "the embedded store", "the outbox"."""
        self._synchronous = synchronous
        self._prepare = prepare
        self._read_seconds = read_seconds
        self._busy_seconds = busy_seconds
        self._writer: sqlite3.Connection | None = None
        self._idle_readers: list[_Reader] = []
        self._one_writer = anyio.CapacityLimiter(1)
        self._readers = anyio.CapacityLimiter(readers)
        self._tenants = _TenantLimits(max(1, readers // 2))

    async def __aenter__(self) -> Self:
        self._writer = await anyio.to_thread.run_sync(self._open_writer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A write under way ends first: closing a connection while another thread runs a
        # statement on it can crash the process (seen: a salvage closing the outbox mid-publish).
        async with self._one_writer:
            writer, self._writer = self._writer, None
        connections = [reader.db for reader in self._idle_readers]
        self._idle_readers = []  # readers still busy are closed as their read ends
        if writer is not None:
            connections.append(writer)
        for db in connections:
            await anyio.to_thread.run_sync(db.close)

    async def write(self, work: Work[_T]) -> _T:
        """Run `work` in one transaction on the writer; BEGIN IMMEDIATE takes the write lock up
        front, so a second process waits (busy timeout) instead of failing half-way."""
        db = self._writer
        if db is None:
            raise self._closed()

        def transaction() -> _T:
            if self._writer is not db:  # closed while this write waited for its turn
                raise self._closed()
            with self._errors(), _Transaction(db):
                return work(db)

        return await anyio.to_thread.run_sync(transaction, limiter=self._one_writer)

    async def read(self, work: Work[_T], *, tenant: str | None = None) -> _T:
        """Run `work` on a read-only connection, interrupted past the read time limit.

        `tenant`: whom the read is for; reads of one tenant beyond its share of the readers
        wait for its own earlier ones, not for everyone's.
        """
        if self._writer is None:
            raise self._closed()
        async with self._tenants.slot(tenant), self._readers:
            reader = self._idle_readers.pop() if self._idle_readers else None

            def run() -> _T:
                nonlocal reader
                with self._errors():
                    if reader is None:
                        reader = _Reader(self._connect(read_only=True))
                    return reader.run(work, self._read_seconds)

            try:
                return await anyio.to_thread.run_sync(run)
            finally:
                if reader is not None and self.is_open():
                    self._idle_readers.append(reader)
                elif reader is not None:  # the file was closed meanwhile
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(reader.db.close)

    def is_open(self) -> bool:
        return self._writer is not None

    def _closed(self) -> StoreError:
        return StoreError(f"{self.label} {self.path} is not open (it is being closed or replaced)")

    def _open_writer(self) -> sqlite3.Connection:
        _owner_only(self.path, self.label)
        with self._errors():
            db = self._connect(read_only=False)
            try:
                self._use_wal(db)
                db.execute(f"PRAGMA synchronous = {self._synchronous}")
                db.execute("PRAGMA foreign_keys = ON")
                with _Transaction(db):
                    self._prepare(db)
            except BaseException:
                db.close()
                raise
        return db

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Switch to WAL. The switch needs a moment alone with the file and, unlike a
        transaction, fails at once instead of waiting when another process opens it too."""
        deadline = time.monotonic() + self._busy_seconds
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as err:
                if _primary_code(err) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            else:
                return

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_seconds * 1000)}")
            if read_only:
                db.execute("PRAGMA query_only = ON")
        except BaseException:
            db.close()
            raise
        return db

    def _errors(self) -> _StoreErrors:
        return _StoreErrors(self.path, self._read_seconds, self._busy_seconds, self.label)


class _TenantLimits:
    """A limit on the reads one tenant runs at once; a tenant's limiter lives while in use."""

    def __init__(self, each: int) -> None:
        self._each = each
        self._limiters: dict[str, tuple[anyio.CapacityLimiter, int]] = {}

    @asynccontextmanager
    async def slot(self, tenant: str | None) -> AsyncGenerator[None]:
        if tenant is None:
            yield
            return
        limiter, users = self._limiters.get(tenant) or (anyio.CapacityLimiter(self._each), 0)
        self._limiters[tenant] = (limiter, users + 1)
        try:
            async with limiter:
                yield
        finally:
            limiter, users = self._limiters[tenant]
            if users == 1:
                del self._limiters[tenant]
            else:
                self._limiters[tenant] = (limiter, users - 1)


class _Reader:
    """A read-only connection whose statements stop at a deadline."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._deadline = float("inf")
        db.set_progress_handler(self._past_deadline, PROGRESS_STEPS)

    def run(self, work: Work[_T], seconds: float) -> _T:
        self._deadline = time.monotonic() + seconds
        try:
            return work(self.db)
        finally:
            self._deadline = float("inf")

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0


class _Transaction:
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
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
        finally:
            if self._db.in_transaction:  # the work failed, or COMMIT itself did (disk full)
                self._db.execute("ROLLBACK")


class _StoreErrors:
    """Turns sqlite3 failures into StoreErrors that name the file and the fix."""

    def __init__(self, path: Path, read_seconds: float, busy_seconds: float, label: str) -> None:
        self._path = path
        self._read_seconds = read_seconds
        self._busy_seconds = busy_seconds
        self._label = label

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise store_error(
                exc, self._path, self._read_seconds, self._busy_seconds, self._label
            ) from exc
        if isinstance(exc, UnicodeDecodeError):
            # SQLite's message about a damaged schema quoted its bytes, which were not UTF-8:
            # Python fails decoding the message itself.
            damaged = damage(f"malformed database schema ({exc.reason})")
            raise store_error(
                damaged, self._path, self._read_seconds, self._busy_seconds, self._label
            ) from exc
        if isinstance(exc, OverflowError):  # a value SQLite cannot hold slipped past validation
            raise StoreError(f"{self._label} cannot hold a value of this call: {exc}") from exc


def damage(what: str) -> sqlite3.DatabaseError:
    """A sqlite3 error saying the file is damaged (SQLITE_CORRUPT), for damage found by a check
    rather than by SQLite itself: it becomes StoreCorrupt like SQLite's own."""
    damaged = sqlite3.DatabaseError(what)
    damaged.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # pyright: ignore[reportAttributeAccessIssue]
    return damaged


def check_intact(db: sqlite3.Connection, *, thorough: bool = False) -> None:
    """Raise the damage error when SQLite's quick_check finds a damaged page (an index page
    overwritten leaves every row readable, yet the file must be treated as damaged).
    `thorough`: integrity_check, which also finds an index that disagrees with its table
    (quick_check does not, and queries through such an index skip rows or fail later)."""
    check = "integrity_check" if thorough else "quick_check"
    try:
        findings = [line for (line,) in db.execute(f"PRAGMA {check}")]
    except sqlite3.DatabaseError as err:  # the check itself met a page it cannot read
        if _primary_code(err) not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise
        raise damage(f"{check}: {err}") from err
    if findings != ["ok"]:
        raise damage(f"{check}: " + " ".join(" ".join(findings).split())[:500])


def store_error(
    err: sqlite3.Error,
    path: Path,
    read_seconds: float = READ_SECONDS,
    busy_seconds: float = BUSY_TIMEOUT_SECONDS,
    label: str = "the embedded store",
) -> StoreError:
    """The StoreError for a sqlite3 failure on `path`, by SQLite's primary result code."""
    code = _primary_code(err)
    elsewhere = "or set REFLEXIO_MCP_DATA_DIR to another folder"
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreBusy(
            f"{label} {path} is busy: another process held its write lock for "
            f"{busy_seconds:g} s. Nothing was changed; try again in a moment"
        )
    if code == sqlite3.SQLITE_FULL:
        return StoreFull(
            f"the disk holding {label} {path} is full. Nothing was changed; free "
            f"some space, {elsewhere}, then try again"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreCorrupt(
            f"{label} {path} is damaged or not a SQLite database ({err}). It was "
            f"left as it is: move it aside (e.g. rename it to {path.name}.broken) and "
            f"reflexio-mcp starts a fresh one, {elsewhere}"
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return StoreReadOnly(
            f"cannot write {label} {path} ({err}): make the file and its folder "
            f"writable by this user, {elsewhere}"
        )
    if code == sqlite3.SQLITE_INTERRUPT:
        return SearchTooSlow(
            f"the query ran longer than {read_seconds:g} s and was stopped so other calls are not "
            "held up: search for fewer or rarer words, or narrow it with start_time/end_time"
        )
    if code == sqlite3.SQLITE_IOERR:
        return StoreError(f"disk I/O error on {label} {path} ({err}): check the disk, {elsewhere}")
    return StoreError(f"{label} {path} failed ({err}); try again")


def _primary_code(err: sqlite3.Error) -> int:
    """SQLite's primary result code (SQLITE_BUSY...), without the extended bits."""
    return (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF


def _owner_only(path: Path, label: str) -> None:
    """Create the folder 0700 and the file 0600, and tighten them if they are looser.

    Raises:
        StoreReadOnly: the folder cannot be created, or a loose mode cannot be tightened.
    """
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as err:
        raise StoreReadOnly(
            f"cannot open {label} at {path}: {err.strerror}; "
            "set REFLEXIO_MCP_DATA_DIR to a writable folder"
        ) from None
    if os.name == "nt":  # NTFS ACLs, not mode bits, guard files there
        return
    ours = [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))]
    for file in ours:
        _tighten(file, 0o600)
    if {entry.name for entry in folder.iterdir()} <= {file.name for file in ours}:
        _tighten(folder, 0o700)
    elif folder.stat().st_mode & 0o077:
        logger.warning(
            "%s is open to other users and holds other files, so it was left as it is; the "
            "store's own files are owner-only (chmod 700 it, or use a folder of its own)",
            folder,
        )


def _tighten(path: Path, mode: int) -> None:
    try:
        current = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if current & ~mode == 0:
        return
    try:
        path.chmod(mode)
    except OSError as err:
        raise StoreReadOnly(
            f"{path} is open to other users (mode {current:o}) and cannot be made owner-only "
            f"({err.strerror}): run `chmod {mode:o} {path}`, or set REFLEXIO_MCP_DATA_DIR to a "
            "folder of your own"
        ) from None
