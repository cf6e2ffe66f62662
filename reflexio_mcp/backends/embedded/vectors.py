"""Turns' meaning vectors in the store's SQLite file, and the scan that finds the nearest.

A vector is kept as int8 in steps of its largest component over 127, with that step: 388 bytes
a turn; on e5 vectors a turn's score moves by at most 0.0005 against float32's. Rows are added by
the indexer (indexer.py) after the turn is stored, and deleted with it. A search scans every
vector of the user: a user's vectors are held in memory once read, topped up with what was
added since, and read again whole after a delete.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reflexio_mcp.backends.embedded.embedder import DIMENSIONS

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from reflexio_mcp.backends.embedded.embedder import Vectors

TABLES = [
    """
    -- seq: the order rows were added in, so a reader can top up what it holds.
    CREATE TABLE IF NOT EXISTS turn_vectors (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        interaction_id INTEGER NOT NULL UNIQUE,
        user_key       INTEGER NOT NULL,
        vector         BLOB NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS turn_vectors_by_user ON turn_vectors (user_key, seq)",
    """
    -- The model that made turn_vectors' rows: another model's vectors are not comparable.
    CREATE TABLE IF NOT EXISTS vector_model (model TEXT NOT NULL)
    """,
]
"""Made at open when missing: a file of an earlier version gains them, and an earlier
version reading this file ignores them (it deletes a turn but not its vector, which a search
then skips, since every hit is read from the interactions table)."""
CACHE_BYTES = 128 * 2**20
"""Vectors held in memory at most, across users (100,000 turns of one user: 39 MB)."""
SCAN_ROWS = 1_024
"""Vectors scored at a time, so the float copy a scan makes stays small (and in cache: 1,024
rows scanned faster than 8,192 at 100,000 vectors)."""

STEP_BYTES = 4
"""A vector's step: a little-endian float32 before its components."""
WIDTH = STEP_BYTES + DIMENSIONS


def prepare(db: sqlite3.Connection, model: str) -> None:
    """Make the tables; if the vectors were made by another model, forget them (the indexer
    makes them again). Vectors of the same model made from another recipe of a turn's text
    (indexer.RECIPE; '' before there were recipes) are kept and searched until the indexer
    replaces each."""
    for statement in TABLES:
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(turn_vectors)")}
    if "recipe" not in columns:
        db.execute("ALTER TABLE turn_vectors ADD COLUMN recipe TEXT NOT NULL DEFAULT ''")
    row = db.execute("SELECT model FROM vector_model").fetchone()
    if row is None:
        db.execute("INSERT INTO vector_model VALUES (?)", (model,))
    elif row[0] != model:
        db.execute("DELETE FROM turn_vectors")
        db.execute("UPDATE vector_model SET model = ?", (model,))


def encoded(vectors: Vectors) -> list[bytes]:
    """Each row as its step (float32) then its int8 components, in steps of its largest
    component over 127: nothing is clipped, so no row is bent."""
    import numpy as np  # numpy loads with the first vectors, not at start-up (15 MiB)

    largest = np.abs(vectors).max(axis=1, keepdims=True) / 127
    steps = np.where(largest > 0, largest, 1.0).astype(np.float32)
    quantized = np.rint(vectors / steps).astype(np.int8)
    return [
        step.astype("<f4").tobytes() + row.tobytes()
        for step, row in zip(steps, quantized, strict=True)
    ]


@dataclass
class _Held:
    ids: npt.NDArray[np.int64]
    steps: npt.NDArray[np.float32]
    rows: npt.NDArray[np.int8]
    last_seq: int

    @property
    def bytes(self) -> int:
        return self.rows.nbytes + self.ids.nbytes + self.steps.nbytes


class VectorIndex:
    """Nearest turns of one user by cosine similarity. Thread-safe."""

    def __init__(self) -> None:
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._lock = threading.Lock()

    def nearest(
        self, db: sqlite3.Connection, user_key: int, query: Vectors, limit: int
    ) -> list[tuple[int, float]]:
        """The `limit` turns nearest `query`, as (interaction_id, cosine), nearest first."""
        import numpy as np

        held = self._current(db, user_key)
        count = len(held.ids)
        if not count:
            return []
        scores = np.empty(count, dtype=np.float32)
        for start in range(0, count, SCAN_ROWS):
            block = held.rows[start : start + SCAN_ROWS].astype(np.float32)
            scores[start : start + SCAN_ROWS] = block @ query
        scores *= held.steps
        best = np.argpartition(-scores, limit - 1)[:limit] if count > limit else np.arange(count)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(held.ids[i]), float(scores[i])) for i in best]

    def forget(self) -> None:
        with self._lock:
            self._held.clear()

    def _current(self, db: sqlite3.Connection, user_key: int) -> _Held:
        """The user's vectors: those held, topped up with any added since (one index seek
        when there are none). A delete by this process forgets what is held (`forget`); one by
        another process leaves a vector held whose turn is gone, which the search drops when
        it reads the turns."""
        (last_seq,) = db.execute(
            "SELECT coalesce(max(seq), 0) FROM turn_vectors WHERE user_key = ?", (user_key,)
        ).fetchone()
        with self._lock:
            held = self._held.get(user_key)
        if held is not None and held.last_seq == last_seq:
            return held
        if held is not None and held.last_seq < last_seq:
            import numpy as np

            added = _read(db, user_key, after=held.last_seq)
            if np.isin(added.ids, held.ids).any():  # made again (another model): read anew
                held = _read(db, user_key, after=0)
            else:
                held = _Held(
                    ids=np.concatenate([held.ids, added.ids]),
                    steps=np.concatenate([held.steps, added.steps]),
                    rows=np.concatenate([held.rows, added.rows]),
                    last_seq=max(held.last_seq, added.last_seq),
                )
        else:
            held = _read(db, user_key, after=0)
        self._keep(user_key, held)
        return held

    def _keep(self, user_key: int, held: _Held) -> None:
        with self._lock:
            self._held[user_key] = held
            self._held.move_to_end(user_key)
            total = sum(h.bytes for h in self._held.values())
            while total > CACHE_BYTES and len(self._held) > 1:
                _, dropped = self._held.popitem(last=False)
                total -= dropped.bytes


def _read(db: sqlite3.Connection, user_key: int, *, after: int) -> _Held:
    import numpy as np

    rows = db.execute(
        "SELECT seq, interaction_id, vector FROM turn_vectors WHERE user_key = ? AND seq > ? "
        "ORDER BY seq",
        (user_key, after),
    ).fetchall()
    kept = [(rowid, bytes(blob)) for _, rowid, blob in rows if len(blob) == WIDTH]
    packed = np.frombuffer(b"".join(blob for _, blob in kept), dtype=np.uint8)
    packed = packed.reshape(len(kept), WIDTH)
    return _Held(
        ids=np.array([rowid for rowid, _ in kept], dtype=np.int64),
        steps=packed[:, :STEP_BYTES].copy().view("<f4").reshape(len(kept)).astype(np.float32),
        rows=packed[:, STEP_BYTES:].copy().view(np.int8),
        last_seq=max((int(row[0]) for row in rows), default=after),
    )
