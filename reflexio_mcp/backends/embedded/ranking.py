"""How the embedded store ranks a search's matches: each turn by its own bm25 and a share of
its neighbours' in its session.

An answer is often split over turns: "Where did you go on holiday?" then "Paris, in June". A
question's words in the turn before or after a turn count for it too, at NEIGHBOUR_WEIGHT of
that turn's score, so the answer ranks up though it shares only "June" with the question. A
turn's neighbours are the user's turns just before and after it in time, when they are of its
session. Only matches are ranked: a turn matching none of the words stays out, as on
Reflexio. Computed over the CANDIDATES best bm25 matches, so a search costs little more than
its full-text match.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

Conditions = Callable[[str], tuple[str, list[Any]]]
"""The conditions a turn of the result meets, as SQL on the given table alias ("i."), and
their parameters: the user, the time window, the request."""

CANDIDATES = 200
"""The best full-text matches re-ranked with their neighbours."""
NEIGHBOUR_WEIGHT = 0.5
"""The share of a neighbour's score a turn gains (measured on LoCoMo's development half)."""


def ranked_ids(
    db: sqlite3.Connection,
    matches: str,
    match_params: Sequence[str],
    conditions: Conditions,
    limit: int,
) -> list[int]:
    """The ids of the `limit` best turns, best first; ties newest first.

    `matches`: SQL giving (id, rank) for the full-text matches. Only they are ranked: a
    neighbour that matches nothing is left out, as Reflexio would leave it out.
    """
    where, params = conditions("i.")
    candidates = db.execute(
        f"SELECT m.id, -m.rank, i.created_at FROM (SELECT id, min(rank) AS rank FROM "
        f"({matches}) GROUP BY id) m JOIN interactions i ON i.interaction_id = m.id "
        f"WHERE {where} ORDER BY m.rank, i.created_at DESC, i.interaction_id DESC LIMIT ?",
        (*match_params, *params, CANDIDATES),
    ).fetchall()
    if not candidates:
        return []
    own = {int(rowid): float(score) for rowid, score, _ in candidates}
    created = {int(rowid): int(at) for rowid, _, at in candidates}
    scores = dict(own)
    for rowid, neighbour in _neighbours(db, list(own), conditions):
        if neighbour in own:  # a result matches the query, as on Reflexio
            scores[neighbour] += NEIGHBOUR_WEIGHT * own[rowid]
    best = sorted(scores, key=lambda rowid: (-scores[rowid], -created[rowid], -rowid))
    return best[:limit]


def _neighbours(
    db: sqlite3.Connection, ids: list[int], conditions: Conditions
) -> list[tuple[int, int]]:
    """(turn, neighbour) for each turn's previous and next turn in its session: the user's
    turns just before and after it in time, when they are of its session."""
    beside, params = conditions("n.")

    def nearest(before: bool) -> str:
        compare, order = ("<", "DESC") if before else (">", "ASC")
        return (
            f"(SELECT n.interaction_id FROM interactions n WHERE {beside} AND "
            f"(n.created_at, n.interaction_id) {compare} (t.created_at, t.interaction_id) "
            f"ORDER BY n.created_at {order}, n.interaction_id {order} LIMIT 1)"
        )

    pairs = db.execute(
        f"SELECT t.interaction_id, {nearest(True)}, {nearest(False)} FROM json_each(?) c "
        "JOIN interactions t ON t.interaction_id = c.value",
        (*params, *params, json.dumps(ids)),
    ).fetchall()
    near = {rowid for _, *beside_ids in pairs for rowid in beside_ids if rowid is not None}
    sessions = dict(
        db.execute(
            "SELECT i.interaction_id, p.session_id FROM interactions i JOIN publishes p ON "
            "p.request_id = i.request_id WHERE i.interaction_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps([*ids, *near]),),
        ).fetchall()
    )
    return [
        (rowid, neighbour)
        for rowid, *beside_ids in pairs
        for neighbour in beside_ids
        if neighbour is not None
        and rowid in sessions
        and sessions.get(neighbour) == sessions[rowid]
    ]
