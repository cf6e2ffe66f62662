"""The months a search's question names, so the good matches stored then rank first.

"What did Maria donate to the shelter in December 2023?" is about what was said in December
2023: of the turns that match the question well (at least MONTH_LIFT_SHARE of the best one's
score: ranking.named_months_first), those stored in that month come first. Measured on
LoCoMo's development half: recall@10 0.79 -> 0.81 (docs/performance.md). English month names
only, capitalised as written, with a day or a year ("October 13, 2023", "May 2023") or after a
preposition ("in June", "since March"): "What did August say?" or "June and I" name no month.
Months are UTC, as created_at is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_NAMED = re.compile(
    r"\b(" + "|".join(MONTHS) + r")\b(?:\s+(\d{1,2})(?:st|nd|rd|th)?\b)?(?:,?\s+(\d{4})\b)?"
)
_PREPOSITION = re.compile(
    r"\b(?:in|on|of|during|since|until|till|before|after|last|this|next|early|late|mid|by|"
    r"from|to|through|around)\s+$",
    re.IGNORECASE,
)
_BEFORE_CHARS = 12
"""Characters before a month's name its preposition is looked for in (the longest, "through",
and a space or a few): a look over the whole query before each name of a query of thousands
took seconds."""
MAX_MONTHS = 12
"""Months one question can name, and MAX_MONTHS * 4 the month names in it: more are not a time
cue but a list."""

Month = tuple[int, int | None]
"""(month 1-12, year or None: that month of any year)."""


def months_named(query: str) -> frozenset[Month]:
    """The months `query` names (none if it names more than MAX_MONTHS)."""
    named: set[Month] = set()
    for seen, match in enumerate(_NAMED.finditer(query)):
        if seen == MAX_MONTHS * 4:
            return frozenset()
        name, day, year = match.groups()
        before = query[max(0, match.start() - _BEFORE_CHARS) : match.start()]
        if not (day or year) and not _PREPOSITION.search(before):
            continue
        named.add((MONTHS.index(name) + 1, int(year) if year else None))
        if len(named) > MAX_MONTHS:
            return frozenset()
    return frozenset(named)


def in_months(created_at: int, months: frozenset[Month]) -> bool:
    """Whether a turn stored at `created_at` (Unix seconds) was stored in one of `months`."""
    try:
        when = datetime.fromtimestamp(created_at, UTC)
    except (OverflowError, OSError, ValueError):  # a time no calendar holds
        return False
    return (when.month, when.year) in months or (when.month, None) in months
