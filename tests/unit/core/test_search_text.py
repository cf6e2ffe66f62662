"""How a query's CJK runs become phrases."""

from __future__ import annotations

from reflexio_mcp.core.search_text import MAX_CJK_QUERY_RUN, cjk_phrases


def test_a_long_cjk_run_of_a_query_is_matched_by_its_first_characters() -> None:
    # The cost of a phrase grows with its length: a pasted 9,000-character run stalled a search.
    run = "".join(chr(0x4E00 + n) for n in range(9_000))
    [(phrase, star)] = cjk_phrases(run)
    assert phrase.split() == [run[n : n + 2] for n in range(MAX_CJK_QUERY_RUN - 1)]
    assert not star


def test_a_one_character_run_is_a_prefix() -> None:
    assert cjk_phrases("寿 and 司") == [("寿", True), ("司", True)]
