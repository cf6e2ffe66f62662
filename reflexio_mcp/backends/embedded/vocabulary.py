"""Each user's own full-text vocabulary: text cut by SQLite's own tokenizers, every token
prefixed with the user's key.

The embedded store's indexes hold these prefixed tokens, so a search covers only the caller's
rows: a prefix query ("a"*) expands only the caller's words, and bm25 counts how many of the
caller's turns hold a word, not how many of everyone's. A shared index with a user column
would still expand and count every user's matches before filtering them.

The cutting is SQLite's (porter unicode61 for words, unicode61 for the CJK character pairs of
search_text), done on a private in-memory table, so the prefixed index matches exactly what an
index of the plain text would. The store's tables then split the prefixed text at spaces only
(the ascii tokenizer: the tokens hold no ASCII punctuation, and it leaves other bytes alone).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Sequence

from reflexio_mcp.core.search_text import cjk_grams, cjk_phrases, content_words

WORD_COLUMNS = ("content", "expert_content", "user_action_description")
INDEX_TOKENIZER = "ascii"


LONGEST_RUN = 8_000
"""Characters of a token at most, where they may be 4 bytes each: 32,000 bytes, within FTS5's
32 KiB."""
_LONG_RUN = re.compile(rf"\S{{{LONGEST_RUN},}}")


def token_prefix(user_key: int) -> str:
    """Digits then 'x', so no key's prefix is the start of another's."""
    return f"u{user_key}x"


class Vocabulary:
    """SQLite's tokenizers on a private in-memory database; safe to share between threads."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        for table, columns, tokenizer in (
            ("word_text", WORD_COLUMNS, "porter unicode61"),
            ("gram_text", ("grams",), "unicode61"),
        ):
            self._db.execute(
                f"CREATE VIRTUAL TABLE {table} USING fts5 ({', '.join(columns)}, content='', "
                f"columnsize=0, tokenize='{tokenizer}')"
            )
            self._db.execute(f"CREATE VIRTUAL TABLE {table}_cut USING fts5vocab({table}, instance)")

    def close(self) -> None:
        self._db.close()

    def index_texts(
        self, user_key: int, turns: Sequence[Sequence[str]]
    ) -> list[tuple[list[str], str]]:
        """For each turn (its content, expert_content and user_action_description): the text
        its three word columns and its CJK pairs hold in the index."""
        prefix = token_prefix(user_key)
        pairs = [cjk_grams(*turn) for turn in turns]
        with_pairs = [n for n, text in enumerate(pairs) if text]  # a tenth, or none
        with self._lock:
            words = self._cut("word_text", [tuple(turn) for turn in turns])
            cut_pairs = self._cut("gram_text", [(pairs[n],) for n in with_pairs])
        grams = [""] * len(turns)
        for n, columns in zip(with_pairs, cut_pairs, strict=True):
            grams[n] = _prefixed(prefix, columns[0])
        return [
            ([_prefixed(prefix, tokens) for tokens in columns], turn_grams)
            for columns, turn_grams in zip(words, grams, strict=True)
        ]

    def matches(self, user_key: int, query: str) -> tuple[list[str], list[str]]:
        """The FTS5 terms for the words and for the CJK substrings of `query`, in this user's
        vocabulary: OR'd, each list asks what search_text's word_match and cjk_match ask of a
        plain index. Empty for a part that can match nothing."""
        prefix = token_prefix(user_key)
        words = content_words(query)
        phrases = cjk_phrases(query)
        with self._lock:
            cut_words = self._cut("word_text", [(word, "", "") for word in words])
            cut_phrases = self._cut("gram_text", [(phrase,) for phrase, _ in phrases])
        word_terms = [
            _term(prefix, columns[0], star=n == len(words) - 1)
            for n, columns in enumerate(cut_words)
        ]
        cjk_terms = [
            _term(prefix, columns[0], star=star)
            for columns, (_, star) in zip(cut_phrases, phrases, strict=True)
        ]
        return [t for t in word_terms if t], [t for t in cjk_terms if t]

    def _cut(self, table: str, rows: list[tuple[str, ...]]) -> list[list[list[str]]]:
        """The tokens of each column of each row, in order."""
        if not rows:
            return []
        width = len(rows[0])
        columns = WORD_COLUMNS if table == "word_text" else ("grams",)
        cut: list[list[list[str]]] = [[[] for _ in range(width)] for _ in rows]
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                f"INSERT INTO {table} (rowid, {', '.join(columns)}) VALUES "
                f"(?, {', '.join('?' * width)})",
                [(n, *map(_runs_cut, row)) for n, row in enumerate(rows)],
            )
            found: list[tuple[int, str, int, str]] = db.execute(
                f"SELECT doc, col, offset, term FROM {table}_cut"
            ).fetchall()
            db.execute(f"INSERT INTO {table} ({table}) VALUES ('delete-all')")
        finally:
            db.execute("COMMIT")
        found.sort()
        for doc, column, _, term in found:
            cut[doc][columns.index(column)].append(term)
        return cut


def _runs_cut(text: str) -> str:
    """The text with any run of LONGEST_RUN or more characters without a space, not all ASCII,
    cut into pieces of LONGEST_RUN. SQLite's FTS5 keeps 32 KiB of a token: an ASCII one stays
    readable (and is left as it is, as files indexed before hold it), but one of 20,000 CJK
    characters is cut inside a character and cannot be read back (found by the paging fuzz
    test), so such a publish failed. Queries are cut the same way: a long run is found as a
    phrase of its pieces."""

    def cut(run: re.Match[str]) -> str:
        word = run.group(0)
        if word.isascii():
            return word
        return " ".join(word[n : n + LONGEST_RUN] for n in range(0, len(word), LONGEST_RUN))

    return _LONG_RUN.sub(cut, text)


def _prefixed(prefix: str, tokens: list[str]) -> str:
    return " ".join(prefix + token for token in tokens)


def _term(prefix: str, tokens: list[str], *, star: bool) -> str:
    """One FTS5 phrase of the prefixed tokens ('' if none), the last also as a prefix."""
    if not tokens:
        return ""
    return f'"{_prefixed(prefix, tokens)}"' + ("*" if star else "")
