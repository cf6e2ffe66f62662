"""What the outbox holds: its table, and the records the queue reads from it and hands out."""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reflexio_mcp.core import defaults
from reflexio_mcp.core.models import PublishStatus, iso_time

FILE_NAME = "outbox.sqlite3"
SCHEMA_VERSION = 1
MAX_ROWS = defaults.OUTBOX_MAX_ROWS
MAX_BYTES = int(defaults.OUTBOX_MAX_MB * 2**20)
KEEP_DELIVERED_SECONDS = 7 * 86_400
"""Delivered rows (bookkeeping only) answer get_publish_status this long."""

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

    def publish_status(self) -> PublishStatus:
        """This publish as get_publish_status tells it."""

        def when(seconds: float | None) -> str | None:
            return None if seconds is None else iso_time(int(seconds))

        if self.state == "queued":
            detail = (
                f"waiting in the outbox, {self.ahead} publish(es) ahead of it; it is delivered "
                "in the background when Reflexio takes it"
            )
        elif self.state == "delivered":
            detail = "Reflexio confirmed it: its turns are stored"
        else:
            detail = (
                "Reflexio refused it for good, or kept failing on it or leaving it unanswered "
                "while it took other publishes (last_error says why); it is kept in the outbox. "
                "Fix the cause and publish it again with the same request_id"
            )
        return PublishStatus(
            request_id=self.request_id,
            user_id=self.user_id,
            status=self.state,
            detail=detail,
            turns=self.turns,
            attempts=self.attempts,
            ahead=self.ahead if self.state == "queued" else None,
            queued_at=when(self.queued_at),
            delivered_at=when(self.done_at) if self.state == "delivered" else None,
            failed_at=when(self.done_at) if self.state == "failed" else None,
            last_attempt_at=when(self.last_attempt_at),
            next_attempt_at=when(self.next_attempt_at),
            last_error=self.last_error,
        )


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


def owner_alive(owner: str, mine: str) -> bool:
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


def create_schema(db: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
