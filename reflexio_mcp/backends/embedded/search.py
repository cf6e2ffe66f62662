"""One search of the embedded store, in the mode asked: the candidates of each kind, their
ranking (ranking.py), the scores the hits carry, and what the caller should know.

Scores are 0-1, higher better, and mean what the mode ranks by: fts, bm25 b as b/(1 + b);
vector, the cosine of the query's and the turn's vectors (e5 puts unrelated English text near
0.7 and a paraphrase near 0.85); hybrid, the fused score (1: first by words and by meaning),
where a question that names a month ranks the good matches stored in it first, scores unchanged.
`threshold` keeps the hits scoring at least that.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from reflexio_mcp.backends.embedded.ranking import (
    Conditions,
    Ranked,
    by_words,
    fused,
    named_months_first,
)
from reflexio_mcp.backends.embedded.time_cues import Month
from reflexio_mcp.backends.embedded.vectors import VectorIndex
from reflexio_mcp.backends.embedded.vocabulary import Vocabulary
from reflexio_mcp.core.fields import SearchMode

if TYPE_CHECKING:
    from reflexio_mcp.backends.embedded.embedder import Vectors

MEANING_FLOOR = 0.78
"""In hybrid mode, a turn counts as matching by meaning from this cosine on, so a query that
matches nothing stored finds nothing, as by words (measured on LoCoMo dev: see
docs/performance.md)."""
RANKED_TURNS = 10_000
"""The turns a search's words rank at most, unless its rarest word alone matches more: bm25
scores each in about 0.8 us, so 10,000 cost about 8 ms (measured at 104,000 turns of one user:
a word in all of them took 70-100 ms; docs/performance.md)."""
PENDING_NOTE_TURNS = 50
"""A search says that turns are still to be embedded from this many: fewer are a publish's
own, embedded within seconds."""


def word_matches(
    db: sqlite3.Connection,
    vocabulary: Vocabulary,
    user_key: int,
    query: str,
    conditions: Conditions,
    candidates: int,
) -> Ranked:
    """The best `candidates` full-text matches of `query` among the user's turns, ranked (bm25
    scores), by the terms the ranking can afford (`affordable`)."""
    terms = [
        (table, term)
        for table, table_terms in zip(
            ("interactions_words", "interactions_grams"),
            vocabulary.matches(user_key, query),
            strict=True,
        )
        for term in table_terms
    ]
    if not terms:  # only punctuation or symbols: nothing can match (as on Reflexio)
        return []
    kept = affordable(db, terms)
    indexes = [
        (table, " OR ".join(term for in_table, term in kept if in_table == table))
        for table in dict.fromkeys(table for table, _ in kept)
    ]
    matches = " UNION ALL ".join(
        f"SELECT rowid AS id, rank FROM {table} WHERE {table} MATCH ?" for table, _ in indexes
    )
    return by_words(db, matches, [m for _, m in indexes], conditions, candidates)


def affordable(db: sqlite3.Connection, terms: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (table, term) pairs to rank by: rarest first, while the turns they match add up to
    RANKED_TURNS at most (always the rarest one). FTS5 scores every match before the best are
    taken, so a word in most of a large store's turns would cost more than the rest of the
    search; bm25 weights such a word least, so leaving it out changes little (as
    Elasticsearch's common terms query does it)."""
    if len(terms) == 1:
        return terms
    counted = sorted(
        (_matched_turns(db, table, term), n, table, term) for n, (table, term) in enumerate(terms)
    )
    kept: list[tuple[str, str]] = []
    ranked = 0
    for count, _, table, term in counted:
        if kept and ranked + count > RANKED_TURNS:
            break
        kept.append((table, term))
        ranked += count
    return kept


def _matched_turns(db: sqlite3.Connection, table: str, term: str) -> int:
    """The turns `term` matches, counted up to RANKED_TURNS + 1 (the doclist is read, not
    scored: about 0.03 us a turn)."""
    (count,) = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)",
        (term, RANKED_TURNS + 1),
    ).fetchone()
    return int(count)


def meaning_matches(
    db: sqlite3.Connection,
    index: VectorIndex,
    user_key: int,
    query: Vectors,
    conditions: Conditions,
    candidates: int,
    *,
    narrowed: bool,
) -> Ranked:
    """The `candidates` turns of the user nearest `query` that meet `conditions` (cosine
    scores). `narrowed`: the conditions name more than the user (a time window, a request), so
    every vector is ranked before they are applied, not only the nearest."""
    everything = 2**31 if narrowed else candidates
    nearest = index.nearest(db, user_key, query, everything)
    if narrowed and nearest:
        where, params = conditions("i.")
        kept = {
            int(rowid)
            for (rowid,) in db.execute(
                f"SELECT i.interaction_id FROM interactions i WHERE {where} AND "
                "i.interaction_id IN (SELECT value FROM json_each(?))",
                (*params, json.dumps([rowid for rowid, _ in nearest])),
            )
        }
        nearest = [(rowid, score) for rowid, score in nearest if rowid in kept][:candidates]
    return nearest


def rank(
    db: sqlite3.Connection,
    mode: SearchMode,
    words: Ranked,
    meaning: Ranked,
    conditions: Conditions,
    months: frozenset[Month] = frozenset(),
) -> Ranked:
    """The hits of `mode`, with the scores they carry (see the module's doc); in hybrid mode,
    those stored in the `months` the question names first."""
    if mode == "fts":
        return [(rowid, score / (1 + score)) for rowid, score in words]
    if mode == "vector":
        return [(rowid, min(max(score, 0.0), 1.0)) for rowid, score in meaning]
    close = [(rowid, score) for rowid, score in meaning if score >= MEANING_FLOOR]
    return named_months_first(db, fused(db, words, close, conditions), months)


def pending_turns(
    db: sqlite3.Connection, user_id: str | None = None, user_key: int | None = None
) -> int:
    """The turns (of the user, if given) that have no vector yet (the indexer is making
    them)."""
    if user_id is None or user_key is None:
        (stored,) = db.execute("SELECT count(*) FROM interactions").fetchone()
        (indexed,) = db.execute("SELECT count(*) FROM turn_vectors").fetchone()
    else:
        (stored,) = db.execute(
            "SELECT count(*) FROM interactions WHERE user_id = ?", (user_id,)
        ).fetchone()
        (indexed,) = db.execute(
            "SELECT count(*) FROM turn_vectors WHERE user_key = ?", (user_key,)
        ).fetchone()
    return max(int(stored) - int(indexed), 0)
