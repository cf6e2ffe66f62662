"""How the embedded store ranks a search: by words (bm25, each turn with a share of its
session neighbours' scores), by meaning (cosine of e5 vectors), or both fused.

An answer is often split over turns: "Where did you go on holiday?" then "Paris, in June". A
question's words in the turn before or after a turn count for it too, at NEIGHBOUR_WEIGHT of
that turn's score, so the answer ranks up though it shares only "June" with the question. A
turn's neighbours are the user's turns just before and after it in time, when they are of its
session. Computed over the best matches of each kind (CANDIDATES, or as many as the search
asks for if more), so a search costs little more than its full-text match and its vector scan.

Hybrid fuses the two rankings by reciprocal rank (1/(FUSION_K + rank) from each list a turn is
in), which needs no common scale between bm25 and cosine; then each turn gains
FUSED_NEIGHBOUR_WEIGHT of its neighbours' fused scores; when the question names a month, the
good matches stored in it come first (time_cues.py). Every weight was measured on LoCoMo's
development half (bench/recall.py; docs/performance.md).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from reflexio_mcp.backends.embedded.time_cues import Month, in_months

Conditions = Callable[[str], tuple[str, list[Any]]]
"""The conditions a turn of the result meets, as SQL on the given table alias ("i."), and
their parameters: the user, the time window, the request."""
Ranked = list[tuple[int, float]]
"""(interaction_id, score), best first."""

CANDIDATES = 200
"""The best matches of each kind that are ranked, at least. 100 cost 0.2-0.5 points of
recall@10 on LoCoMo's development half, for 0.8 ms less a search."""
NEIGHBOUR_WEIGHT = 0.5
"""The share of a neighbour's bm25 score a turn gains."""
FUSION_K = 5
MEANING_WEIGHT = 1.0
"""The meaning ranking's weight in the fusion, the words' being 1."""
FUSED_NEIGHBOUR_WEIGHT = 0.25
"""The share of a neighbour's fused score a turn gains."""
MONTH_LIFT_SHARE = 0.2
"""A match stored in a month the question names ranks first if it scores at least this share
of the best match (a weak match from that month does not push a strong one down)."""


def by_words(
    db: sqlite3.Connection,
    matches: str,
    match_params: Sequence[str],
    conditions: Conditions,
    candidates: int,
) -> Ranked:
    """The best full-text matches, scored by bm25 plus their matching neighbours' share.

    `matches`: SQL giving (id, rank) for the full-text matches; the best `candidates` of them
    are ranked. A neighbour that matches nothing is left out, as Reflexio would leave it out.
    """
    where, params = conditions("i.")
    best = db.execute(
        f"SELECT m.id, -m.rank FROM (SELECT id, min(rank) AS rank FROM "
        f"({matches}) GROUP BY id) m JOIN interactions i ON i.interaction_id = m.id "
        f"WHERE {where} ORDER BY m.rank, i.created_at DESC, i.interaction_id DESC LIMIT ?",
        (*match_params, *params, candidates),
    ).fetchall()
    own = {int(rowid): float(score) for rowid, score in best}
    scores = dict(own)
    for rowid, neighbour in neighbours(db, list(own), conditions):
        if neighbour in own:  # a result matches the query, as on Reflexio
            scores[neighbour] += NEIGHBOUR_WEIGHT * own[rowid]
    return _best_first(scores, [rowid for rowid, _ in best])


def fused(db: sqlite3.Connection, words: Ranked, meaning: Ranked, conditions: Conditions) -> Ranked:
    """Both rankings as one: reciprocal rank fusion, then each turn's share of its neighbours'
    fused scores. Scores are scaled to 0-1 (1: first in both lists)."""
    own: dict[int, float] = {}
    for ranking, weight in ((words, 1.0), (meaning, MEANING_WEIGHT)):
        for rank, (rowid, _) in enumerate(ranking):
            own[rowid] = own.get(rowid, 0.0) + weight / (FUSION_K + rank + 1)
    scores = dict(own)
    for rowid, neighbour in neighbours(db, list(own), conditions):
        if neighbour in own:
            scores[neighbour] += FUSED_NEIGHBOUR_WEIGHT * own[rowid]
    top = (1 + MEANING_WEIGHT) / (FUSION_K + 1)
    order = [rowid for rowid, _ in words] + [rowid for rowid, _ in meaning]
    return [(rowid, min(score / top, 1.0)) for rowid, score in _best_first(scores, order)]


def named_months_first(db: sqlite3.Connection, ranked: Ranked, months: frozenset[Month]) -> Ranked:
    """The good matches (at least MONTH_LIFT_SHARE of the best score) stored in one of
    `months` first, then the others, each in its order."""
    if not months or not ranked:
        return ranked
    good = MONTH_LIFT_SHARE * ranked[0][1]
    created = dict(
        db.execute(
            "SELECT interaction_id, created_at FROM interactions WHERE interaction_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps([rowid for rowid, _ in ranked]),),
        ).fetchall()
    )

    def lifted(hit: tuple[int, float]) -> bool:
        when = created.get(hit[0])
        return hit[1] >= good and isinstance(when, int) and in_months(when, months)

    return [hit for hit in ranked if lifted(hit)] + [hit for hit in ranked if not lifted(hit)]


def _best_first(scores: dict[int, float], order: list[int]) -> Ranked:
    """Highest score first; ties in the order the candidates came (newest first, for bm25)."""
    position = {rowid: n for n, rowid in reversed(list(enumerate(order)))}
    best = sorted(scores, key=lambda rowid: (-scores[rowid], position.get(rowid, len(order))))
    return [(rowid, scores[rowid]) for rowid in best]


def neighbours(
    db: sqlite3.Connection, ids: list[int], conditions: Conditions
) -> list[tuple[int, int]]:
    """(turn, neighbour), both ways, for each two of `ids` that are of one session and follow
    each other among the user's turns that meet `conditions` (as every one of `ids` does).
    Only neighbours among `ids` are scored, so each turn's next is looked up (one index seek),
    not also its previous: that is a turn's next."""
    beside, params = conditions("n.")
    rows = db.execute(
        "SELECT t.interaction_id, p.session_id, (SELECT n.interaction_id FROM interactions n "
        f"WHERE {beside} AND (n.created_at, n.interaction_id) > (t.created_at, "
        "t.interaction_id) ORDER BY n.created_at, n.interaction_id LIMIT 1) FROM json_each(?) c "
        "JOIN interactions t ON t.interaction_id = c.value "
        "JOIN publishes p ON p.request_id = t.request_id",
        (*params, json.dumps(ids)),
    ).fetchall()
    sessions = {rowid: session for rowid, session, _ in rows}
    return [
        pair
        for rowid, session, following in rows
        if following in sessions and sessions[following] == session
        for pair in ((rowid, following), (following, rowid))
    ]
