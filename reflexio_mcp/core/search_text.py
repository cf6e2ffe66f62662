"""What a search query means, for every backend: its words, bounded, and CJK substrings.

A store that ranks the words itself (the embedded one) matches a query's content words only:
"what did we decide about the database?" is about "decide" and "database", and a turn sharing
only "what", "did" and "we" with it is no answer. Reflexio gets the query as it was asked.

SQLite's unicode61 tokenizer keeps a run of Chinese, Japanese or Korean characters as one
token ("東京で寿司を食べた"), so a word index alone cannot find "寿司" inside it. The embedded
store therefore keeps a second index of overlapping character pairs (bigrams) of CJK runs;
a CJK query is matched as the phrase of its bigrams, which finds it as a substring.
"""

from __future__ import annotations

import re

MAX_QUERY_TERMS = 32
"""Distinct words one search looks for. Each word adds a scan of the index: 5,000 of them
stalled a search for minutes."""

WORD = re.compile(r"\w+")
_FUNCTION_WORDS = """
    a about above after again against all am an and any are aren as at be because been before
    being below between both but by can cannot could couldn d did didn do does doesn doing
    don down during each few for from further had hadn has hasn have haven having he her
    here hers herself him himself his how i if in into is isn it its itself let ll m me more
    most mustn my myself no nor not o of off on once only or other ought our ours ourselves
    out over own re s same shan she should shouldn so some such t than that the their theirs
    them themselves then there these they this those through to too under until up ve very
    was wasn we were weren what when where which while who whom why will with would
    wouldn you your yours yourself yourselves
    """
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
"""English function words (stop words), casefolded, contractions as WORD cuts them
("didn't" is "didn", "t")."""
CJK_RUN = re.compile(
    "[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002ebef]+"
)
MAX_CJK_QUERY_RUN = 64
"""Characters of one CJK run of a query matched as a phrase. Matching a phrase costs its
length times the positions of its pairs: a 9,000-character run of a repeated pair took
seconds. The first 64 characters pick out the turns holding the run as well."""


def bounded_query(query: str) -> tuple[str | None, str | None]:
    """The query to send, and a note when it was cut.

    A blank query is no query (list the newest). Repeated words are searched once; past
    MAX_QUERY_TERMS distinct words, the rest are left out and the note says so.
    """
    if not query.strip():
        return None, None
    words = WORD.findall(query)
    distinct = _distinct(words)
    if len(distinct) == len(words) and len(words) <= MAX_QUERY_TERMS:
        return query, None
    kept = distinct[:MAX_QUERY_TERMS]
    note = None
    if len(distinct) > MAX_QUERY_TERMS:
        note = (
            f"the query has {len(distinct)} distinct words; searched for the first "
            f"{MAX_QUERY_TERMS} ({' '.join(kept[-3:])} was the last). Search again with the others "
            "if they matter"
        )
    return " ".join(kept), note


def has_words(query: str) -> bool:
    """False for a query of only punctuation, symbols or emoji: it can match nothing."""
    return WORD.search(query) is not None


def word_match(query: str) -> str:
    """FTS5 syntax for 'any of these content words': each quoted (so FTS5 operators in user
    text are inert), the last also matching as a prefix, as Reflexio's own search does."""
    quoted = [f'"{word}"' for word in content_words(query)]
    if quoted:
        quoted[-1] += "*"
    return " OR ".join(quoted)


def content_words(query: str) -> list[str]:
    """The distinct words of the query less its function words; all of them when it has
    nothing else ("who was it?" still finds the turns that say so)."""
    words = _distinct(WORD.findall(query))
    content = [word for word in words if word.casefold() not in FUNCTION_WORDS]
    return (content or words)[:MAX_QUERY_TERMS]


def _distinct(words: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for word in words:
        seen.setdefault(word.casefold(), word)
    return list(seen.values())


def cjk_grams(*texts: str) -> str:
    """The text the bigram index holds for a turn: each CJK run as its overlapping character
    pairs, then its last character alone (so a one-character query finds run ends too)."""
    grams: list[str] = []
    for text in texts:
        for run in CJK_RUN.findall(text):
            grams += [run[i : i + 2] for i in range(len(run) - 1)]
            grams.append(run[-1])
    return " ".join(grams)


def cjk_match(query: str) -> str:
    """FTS5 syntax matching any CJK run of the query as a substring; '' when it has none."""
    return " OR ".join(f'"{phrase}"' + ("*" if star else "") for phrase, star in cjk_phrases(query))


def cjk_phrases(query: str) -> list[tuple[str, bool]]:
    """Each CJK run of the query as the phrase of its pairs, and whether it is matched as a
    prefix (a run of one character: it may start a pair)."""
    phrases: list[tuple[str, bool]] = []
    for run in dict.fromkeys(run[:MAX_CJK_QUERY_RUN] for run in CJK_RUN.findall(query)):
        if len(run) == 1:
            phrases.append((run, True))
        else:
            phrases.append((" ".join(run[i : i + 2] for i in range(len(run) - 1)), False))
    return phrases[:MAX_QUERY_TERMS]
