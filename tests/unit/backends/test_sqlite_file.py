"""SqliteFile closes only connections no other thread is using."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from reflexio_mcp.backends.sqlite_file import SqliteFile
from reflexio_mcp.core.errors import StoreError


def _schema(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")


async def test_closing_waits_for_the_write_under_way_and_refuses_the_next() -> None:
    """A salvage closes the outbox's file while a publish's transaction runs in a worker
    thread: the close must wait for it (closing a connection another thread is using crashed
    a test worker once: a segfault), and a write after the close is refused in words."""
    with anyio.fail_after(30):
        async with anyio.TemporaryDirectory() as folder:
            file = SqliteFile(Path(folder) / "f.sqlite3", _schema)
            await file.__aenter__()
            started = threading.Event()
            release = threading.Event()

            def slow_write(db: sqlite3.Connection) -> int:
                started.set()
                release.wait(10)
                db.execute("INSERT INTO t VALUES (1)")
                return int(db.execute("SELECT count(*) FROM t").fetchone()[0])

            results: list[int] = []

            async def write() -> None:
                results.append(await file.write(slow_write))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write)
                await anyio.to_thread.run_sync(started.wait, 10)
                tasks.start_soon(file.__aexit__, None, None, None)
                await anyio.sleep(0.2)  # the close has begun and must wait
                release.set()
            assert results == [1]
            with pytest.raises(StoreError, match="is not open"):
                await file.write(slow_write)
