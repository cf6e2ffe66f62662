"""Reading what can still be read from a damaged outbox file, row by row.

A damaged page (an index page overwritten, a table page, a truncated file) makes any query
that touches it fail, yet the rows on every other page are intact. The table is scanned with
no index; when the scan breaks off at a damaged page, every seq (rowid) it did not reach is
looked up on its own, so every row on an intact page is read. (Ranges of seqs are not
trusted: a damaged page with keys out of order ends a range scan early, silently.) The
indexes, read alone,
name the rows that existed, so the rows that could not be read are counted (and their
request_ids named) rather than silently missing. A row is kept only when it is whole: its
columns have the schema's types and its body is the JSON publish its columns describe.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

COLUMNS: tuple[str, ...] = (
    "seq", "target", "request_id", "user_id", "session_id", "body", "bytes", "turns", "wait",
    "state", "queued_at", "attempts", "server_errors", "next_attempt_at", "last_attempt_at",
    "last_error", "done_at", "owner", "lease_until",
)  # fmt: skip
"""The outbox table's columns (outbox.SCHEMA), in order."""
MAX_QUERIES = 1_000_000
"""Lookups one salvage may make (seconds of work); past it, what is left is reported unread."""
_TEXT = ("target", "request_id", "user_id", "session_id", "state")
_INTEGER = ("seq", "bytes", "turns", "wait", "attempts", "server_errors")
_REAL = ("queued_at", "next_attempt_at")
_OPTIONAL_REAL = ("last_attempt_at", "done_at", "lease_until")
_OPTIONAL_TEXT = ("last_error", "owner")


@dataclass
class Readable:
    """What a damaged outbox still holds."""

    rows: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    """Whole rows, oldest first, as the table holds them."""
    unreadable_seqs: set[int] = field(default_factory=set[int])
    """Rows known to exist (from an index, or a row that was not whole) but not kept."""
    unreadable_request_ids: set[str] = field(default_factory=set[str])
    unknown_ranges: list[tuple[int, int]] = field(default_factory=list[tuple[int, int]])
    """seq ranges that could not be read: rows there, if any, are not known."""


def read_damaged(db: sqlite3.Connection) -> Readable:
    """Every whole row of the outbox table `db` holds, and an account of what is not."""
    found = Readable()
    known = _known_rows(db)
    top, top_certain = _highest_seq(db, known)
    rows: dict[int, dict[str, Any]] = {}
    doubtful: set[int] = set()
    scanned = True
    try:  # a scan walks every page of the table without comparing keys
        for values in db.execute(f"SELECT {', '.join(COLUMNS)} FROM outbox NOT INDEXED"):
            row = dict(zip(COLUMNS, values, strict=True))
            seq = row["seq"]
            if type(seq) is int:
                if seq in rows:
                    doubtful.add(seq)  # two cells of one seq: the lookup below decides
                rows[seq] = row
    except (sqlite3.DatabaseError, UnicodeDecodeError, OverflowError):
        scanned = False
    top = max(top, max(rows, default=0))
    if scanned:  # only what an index names and the scan did not meet, or met twice
        to_look_up = sorted((set(known) - set(rows)) | doubtful)
    else:  # every seq the scan did not reach, one lookup each
        to_look_up = [seq for seq in range(1, top + 1) if seq not in rows or seq in doubtful]
        if not top_certain:
            found.unknown_ranges.append((top + 1, 2**63 - 1))
    for queries, seq in enumerate(to_look_up):
        if queries >= MAX_QUERIES:
            found.unknown_ranges.append((seq, to_look_up[-1]))
            break
        try:
            values = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM outbox NOT INDEXED WHERE seq = ?", (seq,)
            ).fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError, OverflowError):
            values = None
            found.unknown_ranges.append((seq, seq))
        if values is None:
            rows.pop(seq, None)
        else:
            rows[seq] = dict(zip(COLUMNS, values, strict=True))
    for seq in sorted(rows):
        row = rows[seq]
        if whole(row):
            found.rows.append(row)
        else:
            found.unreadable_seqs.add(seq)
            if isinstance(row["request_id"], str):
                found.unreadable_request_ids.add(row["request_id"])
    kept = {row["seq"] for row in found.rows}
    for seq, request_id in known.items():
        if seq not in kept:
            found.unreadable_seqs.add(seq)
            if request_id is not None:
                found.unreadable_request_ids.add(request_id)
    found.unknown_ranges = [
        (low, high)
        for low, high in _merged(found.unknown_ranges)
        if high - low + 1 > sum(low <= seq <= high for seq in found.unreadable_seqs)
    ]  # a range whose every seq an index names adds nothing to the count
    return found


def whole(row: dict[str, Any]) -> bool:
    """Whether a row read from a damaged file is one the outbox could have written."""
    if not (
        all(isinstance(row[name], str) for name in _TEXT)
        and all(type(row[name]) is int for name in _INTEGER)
        and all(isinstance(row[name], int | float) for name in _REAL)
        and all(row[name] is None or isinstance(row[name], int | float) for name in _OPTIONAL_REAL)
        and all(row[name] is None or isinstance(row[name], str) for name in _OPTIONAL_TEXT)
        and row["state"] in ("queued", "delivered", "failed")
        and row["seq"] >= 1
        and row["target"].lower().startswith(("http://", "https://"))
        and row["target"].isprintable()  # else damage made it a target no deliverer sends to
    ):
        return False
    if row["state"] == "delivered":
        return row["body"] is None or isinstance(row["body"], bytes)
    body = row["body"]
    if not isinstance(body, bytes) or len(body) != row["bytes"]:
        return False
    try:
        document: object = json.loads(body)
    except ValueError:
        return False
    if not isinstance(document, dict):
        return False
    publish = cast("dict[str, object]", document)
    turns = publish.get("interaction_data_list")
    return (
        publish.get("request_id") == row["request_id"]
        and publish.get("user_id") == row["user_id"]
        and publish.get("session_id") == row["session_id"]
        and isinstance(turns, list)
        and len(cast("list[object]", turns)) == row["turns"]
    )


def _known_rows(db: sqlite3.Connection) -> dict[int, str | None]:
    """seq -> request_id (None when only the other index names it) of every row the
    indexes name; an index read stops at its first damaged page and keeps what came before."""
    known: dict[int, str | None] = {}
    reads = [
        ("SELECT seq, request_id FROM outbox INDEXED BY sqlite_autoindex_outbox_1 "
         "WHERE target IS NOT NULL"),
        "SELECT seq, NULL FROM outbox INDEXED BY outbox_sessions WHERE target IS NOT NULL",
        "SELECT seq, NULL FROM outbox INDEXED BY outbox_done WHERE state IS NOT NULL",
    ]  # fmt: skip
    for sql in reads:
        try:
            for seq, request_id in db.execute(sql):
                if type(seq) is int and seq >= 1:
                    name = request_id if isinstance(request_id, str) else None
                    known[seq] = known.get(seq) or name
        except (sqlite3.DatabaseError, UnicodeDecodeError):
            continue
    return known


def _highest_seq(db: sqlite3.Connection, known: dict[int, str | None]) -> tuple[int, bool]:
    """The highest seq the table may hold, and whether that is certain: AUTOINCREMENT's
    record of the highest ever given, or the table's own last row; else what an index names."""
    highest = max(known, default=0)
    certain = False
    for sql in (
        "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
        "SELECT max(seq) FROM outbox NOT INDEXED",
    ):
        try:
            value = db.execute(sql).fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError):
            continue
        if value is not None and type(value[0]) is int:
            highest = max(highest, value[0])
            certain = True
    return highest, certain


def _merged(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged
