"""Hypothesis strategies of every tool's arguments: mostly valid, the rest boundary numbers,
wrong types, missing and unknown arguments, odd text, odd times and odd turns.
REFLEXIO_MCP_FUZZ_EXAMPLES sets the examples per property (default 200, the same ones every run;
set, they are drawn at random: a campaign)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import hypothesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from pydantic import TypeAdapter

from reflexio_mcp.core.fields import Timestamp, UserId
from reflexio_mcp.core.limits import (
    MAX_CONTENT_CHARS,
    MAX_ID_CHARS,
    MAX_INTEGER,
    MAX_QUERY_CHARS,
    MAX_RESULTS,
    MAX_TIMESTAMP,
    MAX_TOOL_DATA_DEPTH,
)

CAMPAIGN = os.environ.get("REFLEXIO_MCP_FUZZ_EXAMPLES")
EXAMPLES = int(CAMPAIGN or "200")


CALL_SECONDS = 30


DEFAULT_USER = "user-default"


LEAKS = ("Traceback", "pydantic", "errors.pydantic.dev", "validation error for")


CRASHES = ("failed unexpectedly", "embedded store", "ran longer than")
"""A crash inside a tool, or a store error (SQL, interrupted query) on a healthy store."""


MAX_ERROR_CHARS = 10_000


USER_ID = TypeAdapter[str](UserId)


TIMESTAMP = TypeAdapter[datetime](Timestamp)


FUZZ = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its example
    derandomize=not CAMPAIGN,  # the same examples every default run; a campaign explores
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


Args = dict[str, Any]


BOUNDARY_INTS = [
    0, -1, 1, 2, 999, 1000, 1001, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
    2**64, 10**30, 10**100, MAX_TIMESTAMP, MAX_TIMESTAMP + 1, 10**12, MAX_TIMESTAMP * 1000,
    MAX_TIMESTAMP * 1000 + 1,
]  # fmt: skip


ODD_TEXT = [
    "", " ", "\t", "\n", " a", "a ", "a\x00b", "\x00", "\x1f", "\x7f", "\x85", "\u200b",
    "\ufeff", "\u2028", "\u0301", "😀", "👩‍👩‍👧", "東京で寿司を食べた", "寿", "한국어", "../",
    "..", ".", "/", "\\", "a/b", "a\\b", "a:b", "C:foo", "%2F", "%00", "a?b", "a#b",
    "{user_id}", '"', '""', "*", "a*", "NEAR(", "NEAR(a b, 2)", "AND", "a AND OR NOT b", "(",
    ")", "-", "^a", "content:a", "'; DROP TABLE interactions; --", "null", "true", "0", "-1",
    "1e309", "NaN", "Infinity", "İ", "ß", "ﬁ", "\U0010ffff", "CLICK", "Scroll",
]  # fmt: skip


LONG_CHARS = ["a", "寿", "😀", "a ", " ", "\u0301"]


WORDS = [
    "sourdough", "starter", "acetone", "feed", "hungry", "寿司", "東京で寿司を食べた", "café",
    "naïve", "Straße", "emoji😀", "NEAR", "AND", "OR", "NOT", 'quote"', "star*", "(paren)",
    "col:on", "e-mail", "42", "x", "İstanbul", "한국어",
]  # fmt: skip


USERS = [
    "alice", "bob", "a:b", "C:foo", "ana@example.com", "a b", "東京", "😀", "...", "a.b",
    "x=y+z", "%2F", "a?b#c", "{user_id}", "a\u200bb", "a\x85b", "u" * MAX_ID_CHARS, "null",
    "true", "[1]",
]  # fmt: skip


REQUEST_POOL = ["req-1", "req-2", "r:é", "東京", "a/b", "null"]


UNKNOWN_NAMES = [
    "limit", "k", "q", "user", "id", "messages", "since", "until", "topk", "TOP_K", "top_k ",
    "", " ", "user_id\x00", "interaction_ids", "__proto__", "😀", "a" * 1000, "arguments",
]  # fmt: skip


ID_CHARS = st.characters(
    exclude_categories=["Cs"],
    exclude_characters="/\\" + "".join(chr(c) for c in range(0x20)) + "\x7f",
)


IDENT_CHARS = st.characters(
    exclude_categories=["Cs"], exclude_characters="".join(chr(c) for c in range(0x20)) + "\x7f"
)


def mostly(valid: SearchStrategy[Any], odd: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """`valid` three times in four, `odd` otherwise."""
    return st.sampled_from((True, True, True, False)).flatmap(lambda ok: valid if ok else odd)


def long_text(*lengths: int) -> SearchStrategy[str]:
    """One character (or pair) repeated to about each length: strings at and past a limit."""
    return st.tuples(st.sampled_from(LONG_CHARS), st.sampled_from(lengths)).map(
        lambda pair: (pair[0] * pair[1])[: pair[1]]
    )


def nested(levels: int, as_list: bool) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value] if as_list else {"a": value}
    return value


def _printable_id(text: str) -> str:
    text = text.strip()
    return "x" if text in ("", ".", "..") else text


JSON_SCALARS: SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(BOUNDARY_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(ODD_TEXT),
)


JSON: SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


DEEP: SearchStrategy[Any] = st.builds(
    nested,
    st.integers(MAX_TOOL_DATA_DEPTH - 3, MAX_TOOL_DATA_DEPTH + 3),
    st.booleans(),
)


ODD_STRING: SearchStrategy[str] = st.one_of(
    st.sampled_from(ODD_TEXT), st.text(max_size=30), long_text(255, 256, 257, 1000, 1001, 2049)
)


ANYTHING: SearchStrategy[Any] = st.one_of(
    st.sampled_from(BOUNDARY_INTS),
    st.sampled_from([True, False, None, 0.5, 1.0, -0.0, 1e308, 5e-324, [], {}, [1], {"a": 1}]),
    ODD_STRING,
    JSON,
)
"""Whatever a careless client might send for any argument."""


SAID: SearchStrategy[str] = st.tuples(
    st.sampled_from(WORDS),
    st.lists(st.sampled_from(WORDS) | st.text(min_size=1, max_size=12), max_size=5),
).map(lambda said: " ".join([said[0], *said[1]]))
"""Text with at least one word of the shared vocabulary, so searches find it."""


USER_IDS: SearchStrategy[str] = st.one_of(
    st.sampled_from(USERS),
    st.text(ID_CHARS, min_size=1, max_size=30).map(_printable_id),
)


IDENTIFIERS: SearchStrategy[str] = st.text(IDENT_CHARS, min_size=1, max_size=40).map(_printable_id)


REQUEST_IDS: SearchStrategy[str] = st.one_of(
    st.uuids().map(str), st.uuids().map(str), IDENTIFIERS, st.sampled_from(REQUEST_POOL)
)


SOURCES: SearchStrategy[str] = st.one_of(
    st.sampled_from(["", "mcp", "chat", "a" * 128, "a.b_c:d-e"]),
    st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,20}", fullmatch=True),
)


COUNTS: SearchStrategy[int] = st.one_of(
    st.integers(1, MAX_RESULTS), st.sampled_from([1, 2, MAX_RESULTS])
)


ODD_COUNTS: SearchStrategy[Any] = st.one_of(
    st.sampled_from(BOUNDARY_INTS),
    st.sampled_from([1.0, 5.0, 1.5, -0.5, "5", "", "ten", True, False, None, [], {}, [5]]),
)


OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


MOMENTS: SearchStrategy[datetime] = st.tuples(
    st.datetimes(min_value=datetime(1, 1, 1)), st.none() | OFFSETS
).map(lambda moment: moment[0].replace(tzinfo=moment[1]))
"""Years 1 to 9999, without an offset or with one up to 14 hours either way."""


TIME_EDGES = [
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59.999999-14:00", "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z", "2026-11-23", "2026-11-23T14:00:00Z", " 2026-11-23 ",
    "2026-11-23 14:00", "20261123T140000Z", "2026-W47-1", 0, -1, 1, MAX_TIMESTAMP,
    MAX_TIMESTAMP + 1, MAX_TIMESTAMP - 0.5, "9999-12-31T23:59:58.5Z", 2**63, 10**30, 0.5, 1.5,
    -1.5, 1e300, None,
]  # fmt: skip


ODD_TIME_TEXT = [
    "last week", "yesterday", "now", "2026-13-01", "2026-02-30", "24:00", "1700000000", "T",
    "9999-99-99", "0000-01-01", "10000-01-01", "2026-11-23T14:00:00+24:00", True,
]  # fmt: skip


TIMES: SearchStrategy[Any] = st.one_of(
    MOMENTS.map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
    MOMENTS.map(lambda moment: moment.date().isoformat()),
    st.integers(0, MAX_TIMESTAMP),
    st.floats(0, MAX_TIMESTAMP),
    st.sampled_from(TIME_EDGES),
)


ODD_TIMES: SearchStrategy[Any] = st.one_of(st.sampled_from(ODD_TIME_TEXT), ANYTHING)


def arguments(
    valid: Mapping[str, SearchStrategy[Any]],
    odd: Mapping[str, SearchStrategy[Any]],
    required: tuple[str, ...] = (),
    whole: SearchStrategy[Args] | None = None,
) -> SearchStrategy[Args]:
    """Calls of one tool: valid three times in four (`whole` if given), else each argument
    left out or valid or odd, sometimes with unknown arguments beside them."""
    valid_call = (
        whole
        if whole is not None
        else st.fixed_dictionaries(
            {name: valid[name] for name in required},
            optional={name: s for name, s in valid.items() if name not in required},
        )
    )
    fuzzed = st.fixed_dictionaries(
        {}, optional={name: mostly(valid[name], odd[name]) for name in valid}
    )
    unknown = st.dictionaries(
        st.sampled_from(UNKNOWN_NAMES) | st.text(max_size=10), ANYTHING, min_size=1, max_size=3
    )
    with_unknown = st.tuples(fuzzed, unknown).map(lambda both: {**both[0], **both[1]})
    return mostly(valid_call, st.one_of(fuzzed, with_unknown))


TOOL_USED: SearchStrategy[Args] = st.fixed_dictionaries(
    {"tool_name": st.text(min_size=1, max_size=20) | st.sampled_from(["kb_search", "寿司"])},
    optional={
        "tool_data": st.dictionaries(st.text(max_size=8), JSON, max_size=4) | DEEP,
        "status": st.sampled_from(["", "ok", "error", "success"]),
    },
)


TURN_FIELDS: dict[str, SearchStrategy[Any]] = {
    "role": st.sampled_from(["User", "Agent", "user", "assistant", "system", "r" * 1000]),
    "expert_content": SAID,
    "user_action": st.sampled_from(["click", "CLICK", "Scroll", "type", "none", "NONE"]),
    "user_action_description": SAID,
    "interacted_image_url": st.sampled_from(["https://x.test/a.png", "u" * 2048]),
    "image_encoding": st.sampled_from(["aGVsbG8=", "A" * 1000]),
    "tools_used": st.lists(TOOL_USED, max_size=3),
    "created_at": st.integers(0, MAX_TIMESTAMP)
    | st.sampled_from([0, 1, MAX_TIMESTAMP - 1, MAX_TIMESTAMP, None]),
}


ODD_TURN_FIELDS: dict[str, SearchStrategy[Any]] = {
    "content": st.one_of(ODD_STRING, long_text(MAX_CONTENT_CHARS, MAX_CONTENT_CHARS + 1)),
    "role": ODD_STRING,
    "expert_content": ODD_STRING,
    "user_action": ODD_STRING,
    "user_action_description": st.one_of(ODD_STRING, long_text(10_000, 10_001)),
    "interacted_image_url": st.one_of(ODD_STRING, long_text(2048, 2049)),
    "image_encoding": st.one_of(ODD_STRING, long_text(10 * 2**20 - 1024, 10 * 2**20, 15_000_001)),
    "tools_used": st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "tool_name": ODD_STRING,
                    "tool_data": st.one_of(DEEP, JSON),
                    "status": ODD_STRING,
                    "tool_nmae": JSON,
                },
            ),
            max_size=3,
        ),
        ANYTHING,
    ),
    "created_at": st.one_of(st.sampled_from(BOUNDARY_INTS), ANYTHING),
}


def kept_by_reflexio(turn: Args) -> Args:
    """A turn that meets Reflexio's rules: a user_action comes with its description, and a
    turn has one image at most."""
    if str(turn.get("user_action", "none")).lower() != "none":
        turn.setdefault("user_action_description", "clicked it")
    if turn.get("interacted_image_url"):
        turn.pop("image_encoding", None)
    return turn


VALID_TURN: SearchStrategy[Args] = st.fixed_dictionaries(
    {"content": SAID}, optional=TURN_FIELDS
).map(kept_by_reflexio)


ODD_TURN: SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            name: mostly(TURN_FIELDS.get(name, SAID), odd) for name, odd in ODD_TURN_FIELDS.items()
        }
        | {"contnet": SAID, "interaction_id": ANYTHING},
    ),
    ANYTHING,
)


PUBLISH_OPTIONS: dict[str, SearchStrategy[Any]] = {
    "user_id": USER_IDS,
    "source": SOURCES,
    "agent_version": st.text(max_size=20),
    "session_id": IDENTIFIERS,
    "request_id": REQUEST_IDS,
    "wait_for_response": st.booleans(),
    "skip_aggregation": st.booleans(),
    "force_extraction": st.booleans(),
}


VALID_PUBLISH: SearchStrategy[Args] = st.one_of(
    st.fixed_dictionaries(
        {"interactions": st.lists(VALID_TURN, min_size=1, max_size=4)},
        optional=PUBLISH_OPTIONS,
    ),
    st.fixed_dictionaries({"user_message": SAID, "agent_response": SAID}, optional=PUBLISH_OPTIONS),
)


PUBLISH = arguments(
    {
        "interactions": st.lists(VALID_TURN, min_size=1, max_size=4),
        "user_message": SAID,
        "agent_response": SAID,
        **PUBLISH_OPTIONS,
    },
    {
        "interactions": st.one_of(st.lists(mostly(VALID_TURN, ODD_TURN), max_size=5), ANYTHING),
        "user_message": st.one_of(ODD_STRING, long_text(MAX_CONTENT_CHARS + 1)),
        "agent_response": ODD_STRING,
        "user_id": st.one_of(ODD_STRING, long_text(MAX_ID_CHARS, MAX_ID_CHARS + 1)),
        "source": st.one_of(ODD_STRING, long_text(128, 129), st.just("Chat Bot")),
        "agent_version": st.one_of(ODD_STRING, long_text(1000, 1001)),
        "session_id": st.one_of(ODD_STRING, long_text(MAX_ID_CHARS, MAX_ID_CHARS + 1)),
        "request_id": st.one_of(ODD_STRING, long_text(MAX_ID_CHARS, MAX_ID_CHARS + 1)),
        "wait_for_response": ANYTHING,
        "skip_aggregation": ANYTHING,
        "force_extraction": ANYTHING,
    },
    whole=VALID_PUBLISH,
)


QUERIES: SearchStrategy[str] = st.one_of(
    SAID,
    st.sampled_from(ODD_TEXT),
    st.tuples(st.sampled_from(WORDS), st.sampled_from(ODD_TEXT)).map(" ".join),
    st.integers(0, 3000).map(lambda n: " ".join(f"w{i}" for i in range(n))[:MAX_QUERY_CHARS]),
    long_text(MAX_QUERY_CHARS),
)


SEARCH = arguments(
    {
        "query": QUERIES,
        "user_id": USER_IDS,
        "top_k": COUNTS,
        "most_recent_k": COUNTS,
        "start_time": TIMES,
        "end_time": TIMES,
        "search_mode": st.sampled_from(["vector", "fts", "hybrid"]),
        "threshold": st.floats(0, 1) | st.sampled_from([0, 1]),
        "request_id": st.sampled_from(REQUEST_POOL) | IDENTIFIERS,
    },
    {
        "query": st.one_of(ODD_STRING, long_text(MAX_QUERY_CHARS + 1), ANYTHING),
        "user_id": st.one_of(ODD_STRING, long_text(MAX_ID_CHARS + 1), ANYTHING),
        "top_k": ODD_COUNTS,
        "most_recent_k": ODD_COUNTS,
        "start_time": ODD_TIMES,
        "end_time": ODD_TIMES,
        "search_mode": st.one_of(st.sampled_from(["FTS", "semantic", ""]), ANYTHING),
        "threshold": st.one_of(
            st.sampled_from([-1e-300, 1.0000001, 2, -1, 10**100, "0.5"]), ANYTHING
        ),
        "request_id": st.one_of(ODD_STRING, long_text(MAX_ID_CHARS + 1), ANYTHING),
    },
)


GET = arguments(
    {"user_id": USER_IDS, "top_k": COUNTS, "start_time": TIMES, "end_time": TIMES},
    {
        "user_id": st.one_of(ODD_STRING, ANYTHING),
        "top_k": ODD_COUNTS,
        "start_time": ODD_TIMES,
        "end_time": ODD_TIMES,
    },
)


GET_ALL = arguments({"top_k": COUNTS}, {"top_k": ODD_COUNTS})


PUBLISH_STATUS = arguments(
    {"request_id": REQUEST_IDS, "user_id": USER_IDS},
    {"request_id": st.one_of(ODD_STRING, ANYTHING), "user_id": st.one_of(ODD_STRING, ANYTHING)},
    required=("request_id",),
)


@dataclass(frozen=True)
class StoredId:
    """Stands for the id of a stored interaction, chosen when the call is made: the draws
    must not depend on what earlier examples stored."""

    pick: int
    by_owner: bool
    name_owner: bool


DELETE = mostly(
    st.builds(
        StoredId,
        pick=st.integers(0, 2**32),
        by_owner=st.sampled_from([True, True, False]),
        name_owner=st.booleans(),
    ).map(lambda stored: {"interaction_id": stored}),
    arguments(
        {
            "interaction_id": st.integers(1, MAX_INTEGER) | st.sampled_from([1, 2, MAX_INTEGER]),
            "user_id": USER_IDS,
        },
        {
            "interaction_id": st.one_of(ODD_COUNTS, ANYTHING),
            "user_id": st.one_of(ODD_STRING, ANYTHING),
        },
        required=("interaction_id",),
    ),
)
"""Deletes of stored interactions (by their owner or by another user), and of made-up ids."""


RESOURCE_USER_IDS: SearchStrategy[str] = st.one_of(
    USER_IDS, ODD_STRING, long_text(MAX_ID_CHARS, MAX_ID_CHARS + 1)
)
