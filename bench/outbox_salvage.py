"""Benchmark: what the outbox's damage check costs at open, and how long a salvage takes.

    uv run python bench/outbox_salvage.py [--rows 1000 10000]

For each size: an outbox of that many queued publishes (one 500-character turn each, 50 users,
200 sessions) in a temporary folder; PRAGMA quick_check and PRAGMA integrity_check on it (the
open runs the latter), a whole open of the intact file, then one index page overwritten and
the open that salvages it. Prints one table. Files only; nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import tempfile
import time
from pathlib import Path

import anyio

from reflexio_mcp.backends.reflexio.outbox import FILE_NAME, Outbox
from reflexio_mcp.core.models import InteractionData, PublishRequest

TARGET = "http://127.0.0.1:1"


async def measure(rows: int) -> list[str]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        async with Outbox(folder, TARGET, max_rows=rows + 1) as outbox:
            for n in range(rows):
                publish = PublishRequest(
                    request_id=f"req-{n}", user_id=f"u{n % 50}", session_id=f"s{n % 200}",
                    interaction_data_list=[InteractionData(content=f"turn {n} " + "x" * 500)],
                )  # fmt: skip
                await outbox.enqueue(
                    publish, publish.checked_body(), wait_for_response=False, lease=None
                )
        path = folder / FILE_NAME
        checks: list[float] = []
        for check in ("quick_check", "integrity_check"):
            db = sqlite3.connect(path)
            started = time.perf_counter()
            db.execute(f"PRAGMA {check}").fetchall()
            checks.append(time.perf_counter() - started)
            db.close()
        started = time.perf_counter()
        async with Outbox(folder, TARGET, max_rows=rows + 1):
            pass
        opened = time.perf_counter() - started
        db = sqlite3.connect(path)
        (page,) = db.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'outbox_sessions'"
        ).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
        db.close()
        with path.open("r+b") as file:
            file.seek(size * (page - 1))
            file.write(b"\xff" * size)
        started = time.perf_counter()
        async with Outbox(folder, TARGET, max_rows=rows + 1) as outbox:
            salvaged = outbox.salvage.salvaged if outbox.salvage else 0
        salvage = time.perf_counter() - started
        mib = (await anyio.Path(path).stat()).st_size / 2**20
    cells = [rows, f"{mib:.1f}", *(f"{s * 1000:.0f}" for s in (*checks, opened, salvage))]
    return [str(cell) for cell in (*cells, salvaged)]


def main() -> None:
    parser = argparse.ArgumentParser(description="the outbox's damage check and salvage, timed")
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    flags = parser.parse_args()
    logging.disable(logging.ERROR)  # the salvage's own log line
    header = ["rows", "MiB", "quick_check ms", "integrity_check ms", "open ms", "salvage ms",
              "salvaged"]  # fmt: skip
    table = [header, *(anyio.run(measure, rows) for rows in flags.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
