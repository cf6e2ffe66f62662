"""The embedded store's file format: its tables and full-text indexes, how a file of an
earlier version is brought up to date, and how turns enter and leave the indexes.

Two full-text indexes, kept in the same transaction as the rows: words (porter, unicode61)
over content, expert_content and user_action_description, and CJK character pairs (see
search_text). Both hold each user's own vocabulary (vocabulary.py), so a search ranks and
expands only the caller's rows.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from reflexio_mcp.backends.embedded.vocabulary import INDEX_TOKENIZER, WORD_COLUMNS, Vocabulary
from reflexio_mcp.core.errors import StoreError

logger = logging.getLogger("reflexio_mcp.backends.embedded.store")  # the store's one log name

FILE_NAME = "interactions.sqlite3"
SCHEMA_VERSION = 3
USER_INDEXES = [
    """
    -- Numbers the users for user_vocabulary's token prefixes.
    CREATE TABLE user_keys (user_key INTEGER PRIMARY KEY, user_id TEXT NOT NULL UNIQUE);
    """,
    f"""
    CREATE VIRTUAL TABLE interactions_words USING fts5 (
        {", ".join(WORD_COLUMNS)}, content='', tokenize='{INDEX_TOKENIZER}'
    );
    """,
    f"""
    CREATE VIRTUAL TABLE interactions_grams USING fts5 (
        grams, content='', tokenize='{INDEX_TOKENIZER}'
    );
    """,
]
"""The full-text indexes of schema 3. Contentless: they hold prefixed tokens, not text."""
SCHEMA = [
    """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    """,
    """
    CREATE TABLE publishes (
        request_id    TEXT PRIMARY KEY,
        user_id       TEXT NOT NULL,
        session_id    TEXT NOT NULL,
        source        TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        published_at  INTEGER NOT NULL
    );
    """,
    """
    -- AUTOINCREMENT: an id is never reused, even after deletes.
    CREATE TABLE interactions (
        interaction_id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id                 TEXT NOT NULL,
        request_id              TEXT NOT NULL REFERENCES publishes(request_id),
        created_at              INTEGER NOT NULL,
        role                    TEXT NOT NULL,
        content                 TEXT NOT NULL,
        expert_content          TEXT NOT NULL,
        user_action             TEXT NOT NULL,
        user_action_description TEXT NOT NULL,
        interacted_image_url    TEXT NOT NULL,
        image_encoding          TEXT NOT NULL,
        tools_used              TEXT NOT NULL
    );
    """,
    """
    CREATE INDEX interactions_by_user_time
        ON interactions (user_id, created_at DESC, interaction_id DESC);
    """,
    """
    CREATE INDEX interactions_by_time ON interactions (created_at DESC, interaction_id DESC);
    """,
    *USER_INDEXES,
]
"""One statement each: executescript() would COMMIT the transaction that guards them."""
LOOKUP_INDEXES = [
    "CREATE INDEX IF NOT EXISTS publishes_by_user_session ON publishes (user_id, session_id)",
    "CREATE INDEX IF NOT EXISTS interactions_by_request ON interactions (request_id)",
]
"""For reading one session: its publishes, then their turns. Made at open when missing (a
file of an earlier version gains them; one that has them reads the same to it)."""
OLD_INDEXES = [
    "DROP TRIGGER IF EXISTS interactions_fts_insert",
    "DROP TRIGGER IF EXISTS interactions_fts_delete",
    "DROP TABLE IF EXISTS interactions_fts",
    "DROP TABLE IF EXISTS interactions_cjk",
]
"""Schema 1 and 2's full-text indexes (of every user's words together), replaced by 3's."""
MIGRATION_BATCH = 1000
"""Rows indexed at a time when a file of an earlier schema is opened."""


def prepare(db: sqlite3.Connection, path: Path, vocabulary: Vocabulary) -> None:
    """Create the schema in a new file, or bring an earlier one up to date (in the open's
    transaction); refuse a file of a newer version."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if "schema_version" not in tables:
        for statement in [*SCHEMA, *LOOKUP_INDEXES]:
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        return
    (version,) = db.execute("SELECT version FROM schema_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer reflexio-mcp (schema {version}); "
            "upgrade reflexio-mcp or point REFLEXIO_MCP_DATA_DIR elsewhere"
        )
    if version < 3:
        _migrate(db, path, vocabulary)
    for statement in LOOKUP_INDEXES:
        db.execute(statement)


def _migrate(db: sqlite3.Connection, path: Path, vocabulary: Vocabulary) -> None:
    """1 or 2 -> 3: the full-text indexes of every user together are replaced by per-user
    ones, filled from the rows. All in the open's one transaction: a process stopped
    half-way leaves the file as it was."""
    (count,) = db.execute("SELECT count(*) FROM interactions").fetchone()
    logger.warning(
        "rebuilding the search indexes of %s for this version (%d interactions): once, "
        "about a minute per 100,000 interactions; stopping it leaves the store as it was",
        path,
        count,
    )
    for statement in [*OLD_INDEXES, *USER_INDEXES]:
        db.execute(statement)
    db.execute("INSERT INTO user_keys (user_id) SELECT DISTINCT user_id FROM interactions")
    last = 0
    while rows := db.execute(
        "SELECT i.interaction_id, k.user_key, i.content, i.expert_content, "
        "i.user_action_description FROM interactions i JOIN user_keys k USING (user_id) "
        "WHERE i.interaction_id > ? ORDER BY i.interaction_id LIMIT ?",
        (last, MIGRATION_BATCH),
    ).fetchall():
        by_user: dict[int, list[tuple[int, Sequence[str]]]] = {}
        for rowid, user_key, *texts in rows:
            by_user.setdefault(user_key, []).append((rowid, texts))
        for user_key, turns in by_user.items():
            index_turns(db, vocabulary, user_key, turns)
        last = rows[-1][0]
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


def index_turns(
    db: sqlite3.Connection,
    vocabulary: Vocabulary,
    user_key: int,
    rows: Sequence[tuple[int, Sequence[str]]],
) -> None:
    """Index turns of one user: (interaction_id, its texts in WORD_COLUMNS' order)."""
    texts = vocabulary.index_texts(user_key, [turn for _, turn in rows])
    db.executemany(
        f"INSERT INTO interactions_words (rowid, {', '.join(WORD_COLUMNS)}) VALUES (?, ?, ?, ?)",
        [(rowid, *words) for (rowid, _), (words, _) in zip(rows, texts, strict=True)],
    )
    db.executemany(
        "INSERT INTO interactions_grams (rowid, grams) VALUES (?, ?)",
        [(rowid, grams) for (rowid, _), (_, grams) in zip(rows, texts, strict=True) if grams],
    )


def unindex_turn(
    db: sqlite3.Connection,
    vocabulary: Vocabulary,
    user_key: int,
    rowid: int,
    turn: Sequence[str],
) -> None:
    """Take a deleted turn out of the indexes. Contentless indexes are told the very tokens
    they were given; a row they never held (written by hand) is left alone, as telling them
    would damage them."""
    [(words, grams)] = vocabulary.index_texts(user_key, [turn])
    for table, values in (("interactions_words", words), ("interactions_grams", [grams])):
        held = db.execute(f"SELECT 1 FROM {table}_docsize WHERE id = ?", (rowid,)).fetchone()
        if held is not None:
            columns = ", ".join(WORD_COLUMNS if table == "interactions_words" else ("grams",))
            db.execute(
                f"INSERT INTO {table} ({table}, rowid, {columns}) VALUES "
                f"('delete', ?, {', '.join('?' * len(values))})",
                (rowid, *values),
            )
