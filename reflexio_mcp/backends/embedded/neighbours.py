"""A turn's neighbours in its session, read from the embedded store's SQLite file: the turns
just before and just after it, by (created_at, interaction_id), for a search answer's context.

Two bounded queries a turn (publishes_by_user_session and interactions_by_request serve them),
so a long session costs no more than a short one beyond its index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from reflexio_mcp.core.models import Interaction

Decode = Callable[[Sequence[Any]], Interaction]
"""A row of `columns` as the store's Interaction."""

_SIDE = (
    "SELECT {columns} FROM publishes p JOIN interactions i ON i.request_id = p.request_id "
    "WHERE p.user_id = ? AND p.session_id = ? AND i.user_id = ? "
    "AND (i.created_at, i.interaction_id) {compare} (?, ?) "
    "ORDER BY i.created_at {order}, i.interaction_id {order} LIMIT ?"
)


def session_neighbours(
    db: sqlite3.Connection,
    user_id: str,
    interactions: Sequence[Interaction],
    turns: int,
    *,
    columns: str,
    decode: Decode,
) -> dict[int, list[Interaction]]:
    """For each of `interactions`: up to `turns` turns of its session before it and after it,
    oldest first (see Backend.session_neighbours). `columns` selects, from `i` (interactions)
    joined with `p` (publishes), what `decode` reads."""
    before = _SIDE.format(columns=columns, compare="<", order="DESC")
    after = _SIDE.format(columns=columns, compare=">", order="ASC")
    found: dict[int, list[Interaction]] = {}
    for hit in interactions:
        if turns <= 0 or not hit.session_id:
            found[hit.interaction_id] = []
            continue
        params = (user_id, hit.session_id, user_id, hit.created_at, hit.interaction_id, turns)
        earlier = [decode(row) for row in db.execute(before, params)]
        later = [decode(row) for row in db.execute(after, params)]
        found[hit.interaction_id] = [*reversed(earlier), *later]
    return found
