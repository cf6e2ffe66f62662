"""The outbox's SQLite file, kept usable whatever happens to it.

A damaged file (SQLite's error, or integrity_check at open) is salvaged: every row that can
still be read whole (salvage.py) is copied into a fresh file, which then takes its place; the
damaged file is kept beside it (`.damaged-<time>`), and what was and was not read back is
logged and reported (OutboxSalvage). Damage met while running is salvaged the same way and the
transaction that met it runs again on the fresh file. Each write first checks that the file
at the path is still the one it has open (another process may have salvaged it) under a
shared lock on the folder, which a salvage holds exclusively; if not, it reopens.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio

from reflexio_mcp.backends.reflexio.outbox_rows import create_schema
from reflexio_mcp.backends.reflexio.salvage import COLUMNS, Readable, read_damaged
from reflexio_mcp.backends.sqlite_file import SqliteFile, Work, check_intact, store_error
from reflexio_mcp.core.errors import StoreCorrupt, StoreError, StoreReadOnly
from reflexio_mcp.core.models import iso_time
from reflexio_mcp.core.status import OutboxSalvage

logger = logging.getLogger("reflexio_mcp.backends.reflexio.outbox")  # one name for the outbox's log
LABEL = "the outbox"
_T = TypeVar("_T")


class OutboxFile:
    """The outbox file at `path`, opened with `prepare` (the schema check), reopened or
    salvaged as needed. Use as an async context manager; `write` and `read` run one unit of
    work in a worker thread and raise StoreError subclasses when the file fails."""

    def __init__(
        self, path: Path, prepare: Callable[[sqlite3.Connection], None], *, busy_seconds: float
    ) -> None:
        self.path = path
        self._prepare = prepare
        self._busy_seconds = busy_seconds
        self._file = self._new_file()
        self._inode = 0
        """The inode at the path when `_file` was opened: another one there means another
        process salvaged the file (moved it aside) and `_file` must be reopened."""
        self._swapping = anyio.Lock()
        self.salvage: OutboxSalvage | None = None
        """What the last replacement of a damaged file read back from it (this process)."""

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
        if self._inode == 0:  # nothing was there: this open made it
            self._inode = _inode(self.path)

    async def write(self, work: Work[_T]) -> _T:
        return await self._run(work, write=True)

    async def read(self, work: Work[_T]) -> _T:
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
        can), and no other sends it meanwhile; a dead owner's claim is freed as ever. A queued
        row's schedule is not kept: each is due at once. A whole row's time may be what the
        damage made it, and one in the future would hide the row, and every later row of its
        session, from the deliverer (a row backing off is merely tried once more, early)."""
        now = time.time()
        kept: list[dict[str, Any]] = []
        db = sqlite3.connect(fresh, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            create_schema(db)
            insert = (
                f"INSERT INTO outbox ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})"
            )
            for row in readable.rows:
                if row["state"] == "queued":
                    row["next_attempt_at"] = min(row["next_attempt_at"], now)
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
