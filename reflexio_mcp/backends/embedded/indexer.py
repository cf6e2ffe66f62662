"""Fills in the meaning vectors of stored turns, in the background.

A publish never waits for it: it is woken after each publish (and once at open, which is the
backfill of a store written before vectors, or by another model) and embeds the turns that
have no vector, newest first, a few at a time. Each batch is one transaction, so a process
stopped at any point keeps every batch it finished, and the next one carries on from what is
still missing: nothing is embedded twice, and no turn is left out.

A reply is embedded with the start of the turn it answers (the user's turn before it in
time, when of its session and by another speaker): "Paris, in June" alone means little; after
"Where did you go on holiday?" it is about a trip. Measured on LoCoMo's development half,
recall@10 0.73 -> 0.79 (docs/performance.md). A speaker's own consecutive turns are embedded
alone, so a statement never takes the meaning of an unrelated one said before it. The turn
before is the one stored when the reply is embedded: a turn stored later in between does not
change it.
"""

from __future__ import annotations

import functools
import logging
import sqlite3

import anyio

from reflexio_mcp.backends.embedded.embedder import Embedder
from reflexio_mcp.backends.embedded.vectors import encoded
from reflexio_mcp.backends.sqlite_file import SqliteFile
from reflexio_mcp.core.errors import StoreError

logger = logging.getLogger(__name__)

BATCH = 8
"""Turns embedded at a time: a few hundred milliseconds of work, so a newer publish's turns
are reached soon and each write is short."""
RETRY_SECONDS = 5.0
"""Wait before trying again after the store could not be read or written."""

CONTEXT_CHARS = 300
"""Characters of the turn a reply answers that are embedded before it (the reply's own text
then fills the rest of embedder.MAX_TEXT_CHARS)."""
RECIPE = "reply-context-1"
"""Names how a turn's text is made (embedded_text), in each vector's row: a vector of another
recipe (or '', before recipes) is searched until it is made again and replaced."""

Turn = tuple[int, int, str]
"""(interaction_id, user_key, the text to embed)."""


GENERIC_ROLES = frozenset({"user", "assistant", "system", "agent", "ai", "human", "bot", "model"})


def spoken(role: str, content: str) -> str:
    """A turn as its speaker said it. A speaker's name matters ("what did Caroline...": recall
    on LoCoMo is 0.30 from the content alone, 0.59 with the name); a generic role ("User")
    only makes every turn alike, so it is left out."""
    if role.strip().lower() in GENERIC_ROLES:
        return content
    return f"{role}: {content}"


def embedded_text(role: str, content: str, before: tuple[str, str] | None = None) -> str:
    """What a turn's vector is made from: the turn, after the start of `before` (role,
    content: the turn before it in its session) when that is another speaker's."""
    own = spoken(role, content)
    if before is None or before[0].strip().lower() == role.strip().lower():
        return own
    return f"{spoken(*before)[:CONTEXT_CHARS]}\n{own}"


class Indexer:
    """Embeds the turns a store holds without a vector, while `run` runs."""

    def __init__(self, file: SqliteFile, embedder: Embedder) -> None:
        self._file = file
        self._embedder = embedder
        self._wake = anyio.Event()
        self._wake.set()  # the backfill
        self.busy = False
        """Embedding (turns may be waiting); False once it has found none left."""
        self._done_through = 0
        """Every turn up to this id has its vector (or is gone)."""

    def wake(self) -> None:
        """New turns were stored."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            self.busy = True
            try:
                done = await self._index_all()
                self.busy = False
                if not done:
                    return  # the model is unavailable: searches say so, nothing to do here
            except StoreError as err:
                logger.warning("meaning index: %s; trying again in %.0f s", err, RETRY_SECONDS)
                await anyio.sleep(RETRY_SECONDS)
                self._wake.set()

    async def _index_all(self) -> bool:
        """Embed every turn that has no vector, newest first; False if the model cannot.

        Turns get ever higher ids, so once a pass has found none missing below the newest it
        began with, later passes look only above that (a publish's own turns, not the whole
        table again)."""
        below = 2**63 - 1
        newest = await self._file.read(_newest)
        look = functools.partial(_pending, above=self._done_through)
        while turns := await self._file.read(functools.partial(look, below=below)):
            vectors = await anyio.to_thread.run_sync(
                self._embedder.passages, [text for _, _, text in turns]
            )
            if vectors is None:
                return False
            rows = [
                (rowid, user_key, blob)
                for (rowid, user_key, _), blob in zip(turns, encoded(vectors), strict=True)
            ]
            await self._file.write(functools.partial(_store, rows=rows))
            below = min(rowid for rowid, _, _ in turns)
        self._done_through = max(self._done_through, newest)
        return True


def _newest(db: sqlite3.Connection) -> int:
    (newest,) = db.execute("SELECT coalesce(max(interaction_id), 0) FROM interactions").fetchone()
    return int(newest)


_BEFORE = (
    "SELECT n.role, substr(n.content, 1, ?), p.session_id FROM interactions n "
    "LEFT JOIN publishes p ON p.request_id = n.request_id WHERE n.user_id = ? "
    "AND (n.created_at, n.interaction_id) < (?, ?) "
    "ORDER BY n.created_at DESC, n.interaction_id DESC LIMIT 1"
)
"""The user's turn just before one in time (one index seek), which is the turn before it in
its session when it is of that session, as ranking.neighbours reads them."""


def _pending(db: sqlite3.Connection, *, above: int, below: int) -> list[Turn]:
    rows = db.execute(
        "SELECT i.interaction_id, k.user_key, i.user_id, p.session_id, i.created_at, i.role, "
        "i.content FROM interactions i JOIN user_keys k ON k.user_id = i.user_id "
        "LEFT JOIN publishes p ON p.request_id = i.request_id WHERE i.interaction_id > ? AND "
        "i.interaction_id < ? AND NOT EXISTS (SELECT 1 FROM turn_vectors v WHERE "
        "v.interaction_id = i.interaction_id AND v.recipe = ?) "
        "ORDER BY i.interaction_id DESC LIMIT ?",
        (above, below, RECIPE, BATCH),
    ).fetchall()
    turns: list[Turn] = []
    for rowid, key, user_id, session_id, created_at, role, content in rows:
        params = (CONTEXT_CHARS, user_id, created_at, rowid)
        found = db.execute(_BEFORE, params).fetchone()
        before = (found[0], found[1]) if found and session_id and found[2] == session_id else None
        turns.append((int(rowid), int(key), embedded_text(role, content, before)))
    return turns


def _store(db: sqlite3.Connection, *, rows: list[tuple[int, int, bytes]]) -> None:
    """Keep the vectors of the turns still stored (one may have been deleted meanwhile), once
    each (another process may have embedded it too), replacing one of another recipe."""
    db.executemany(
        "INSERT OR REPLACE INTO turn_vectors (interaction_id, user_key, vector, recipe) "
        "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM interactions WHERE interaction_id = ?) "
        "AND NOT EXISTS (SELECT 1 FROM turn_vectors WHERE interaction_id = ? AND recipe = ?)",
        [(rowid, user_key, blob, RECIPE, rowid, rowid, RECIPE) for rowid, user_key, blob in rows],
    )
