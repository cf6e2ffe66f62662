"""The months a question names (time_cues.py): which words count, and which turns are in them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reflexio_mcp.backends.embedded.ranking import MONTH_LIFT_SHARE, named_months_first
from reflexio_mcp.backends.embedded.time_cues import MAX_MONTHS, Month, in_months, months_named

NAMED: list[tuple[str, set[Month]]] = [
    ("When did Melanie go camping in June?", {(6, None)}),
    ("What happened on October 13, 2023?", {(10, 2023)}),
    ("What did she start in December 2023?", {(12, 2023)}),
    ("plans for May 2024", {(5, 2024)}),
    ("what did we do in May?", {(5, None)}),
    ("the 3rd of March, and April 2nd", {(3, None), (4, None)}),
    ("since March, what changed?", {(3, None)}),
    ("May I ask what we decided?", set()),  # a verb, not a month
    ("What did August say about the move?", set()),  # a name, not a month
    ("June and I went hiking", set()),
    ("the March on Washington", set()),
    ("what we may do in june", set()),  # lowercase: a month's name is capitalised
    ("Marching orders, Augustine", set()),
    ("What did we decide about the database?", set()),
]


@pytest.mark.parametrize(("query", "months"), NAMED)
def test_the_months_a_question_names(query: str, months: set[Month]) -> None:
    assert months_named(query) == months


def test_a_list_of_every_month_is_no_time_cue() -> None:
    every = " ".join(f"{name} 20{year:02}" for year in range(10, 12) for name in ("June", "July"))
    assert len(months_named(every)) == 4
    many = ", ".join(f"June {year}" for year in range(2000, 2000 + MAX_MONTHS + 1))
    assert months_named(many) == frozenset()
    assert months_named("in May " * MAX_MONTHS * 4) == {(5, None)}
    assert months_named("in May " * (MAX_MONTHS * 4 + 1)) == frozenset()  # a list, not a cue


def test_a_turn_is_in_the_month_it_was_stored_in_utc() -> None:
    last_second_of_june = int(datetime(2023, 6, 30, 23, 59, 59, tzinfo=UTC).timestamp())
    assert in_months(last_second_of_june, frozenset({(6, 2023)}))
    assert in_months(last_second_of_june, frozenset({(6, None)}))
    assert not in_months(last_second_of_june + 1, frozenset({(6, None)}))
    assert not in_months(last_second_of_june, frozenset({(6, 2022)}))


@given(st.text(max_size=300), st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_question_and_any_stored_time_are_read_without_error(query: str, when: int) -> None:
    months = months_named(query)
    assert len(months) <= MAX_MONTHS
    assert all(1 <= month <= 12 for month, _ in months)
    assert in_months(when, months) in (True, False)


def test_only_good_matches_from_the_month_named_go_first() -> None:
    """Of the matches stored in the month, those scoring at least MONTH_LIFT_SHARE of the best
    go first; a weak one keeps its place below the strong matches of other months."""
    june, august = 1_686_000_000, 1_691_000_000
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE interactions (interaction_id INTEGER PRIMARY KEY, created_at INT)")
    db.executemany(
        "INSERT INTO interactions VALUES (?, ?)", [(1, august), (2, june), (3, august), (4, june)]
    )
    weak = MONTH_LIFT_SHARE * 0.9 - 0.01
    ranked = [(1, 0.9), (2, 0.5), (3, 0.4), (4, weak)]
    assert named_months_first(db, ranked, frozenset({(6, 2023)})) == [
        (2, 0.5),
        (1, 0.9),
        (3, 0.4),
        (4, weak),
    ]
    assert named_months_first(db, ranked, frozenset({(8, None)})) == [
        (1, 0.9),
        (3, 0.4),
        (2, 0.5),
        (4, weak),
    ]
    assert named_months_first(db, ranked, frozenset()) == ranked
