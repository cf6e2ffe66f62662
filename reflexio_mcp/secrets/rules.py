"""The two shapes a detector takes: a regex (most from a detect-secrets plugin) and how its
matches become secret spans, or a rule of our own for what one regex cannot say. Also the small
typed seam through which plugins' regexes are read. Imports no detect-secrets itself."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal, cast

ALNUM: Final = "A-Za-z0-9"
TOKEN: Final = "A-Za-z0-9_-"

Tail = Literal["free", "extend", "reject"]


@dataclass(frozen=True)
class PatternRule:
    """One compiled regex of a plugin, and how its matches become secret spans.

    `word` is the secret's alphabet (a regex character class body). A match (of the whole regex:
    a group's context is the regex's business) that continues a run of it on the left is not a
    secret (a key inside a longer identifier or hash); on the right,
    `tail` says whether a longer run is the same secret (extend: tokens longer than the plugin's
    fixed length), a different string (reject), or does not matter (free). `left` > 0 instead
    extends the span leftwards over `word` by up to that many characters, for regexes anchored on
    a literal in the middle of the secret. `accept` has the last word on the whole value (often
    the plugin's own regex or validity check). `needles`: skip the regex when none occurs in the
    lowercased text (ASCII, one byte a character: `in` is fastest there; a superset check).
    `fold`: the pattern is a case-insensitive one made case-sensitive (`folded`), run on the
    ASCII-lowercased text; `re` runs those several times faster, and the indices are the same.
    """

    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    priority: int = 0
    needles: tuple[str, ...] = ()
    word: str = ""
    tail: Tail = "free"
    left: int = 0
    accept: Callable[[str], bool] | None = None
    fold: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", tuple(n.lower() for n in self.needles))

    @functools.cached_property
    def _word(self) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
        """One character of `word`, and a run of them."""
        return (re.compile(f"[{self.word}]"), re.compile(f"[{self.word}]*+")) if self.word else None

    def spans(self, text: str, lower: str) -> Iterator[tuple[int, int]]:
        if self.needles and not any(needle in lower for needle in self.needles):
            return
        source = lower if self.fold else text
        char, run = self._word or (None, None)
        covered = 0  # the end of the last secret: a match inside it (an extended run) is not new
        for match in self.pattern.finditer(source):
            start, end = match.span(self.group)
            if start < covered or start == end:
                continue
            if char is not None and run is not None:
                if self.left:
                    floor = max(0, start - self.left - 1)
                    while start > floor and char.match(text, start - 1):
                        start -= 1
                elif self.group == 0 and start > 0 and char.match(text, start - 1):
                    continue
                if self.tail != "free" and char.match(text, end):
                    if self.tail == "reject":
                        continue
                    end = cast(re.Match[str], run.match(text, end)).end()
            if self.accept is None or self.accept(text[start:end]):
                covered = end
                yield start, end


class Rule:
    """A detector that is more than one regex (keyword assignments, PEM blocks, headers)."""

    priority: int = 0

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, kind) of each secret; `lower` is `text` ASCII-lowercased, same indices."""
        raise NotImplementedError


def denylist(plugin: type) -> tuple[re.Pattern[str], ...]:
    """A plugin class's compiled regexes (an `abstractproperty` in its base, so untyped)."""
    return tuple(cast("Iterable[re.Pattern[str]]", getattr(plugin, "denylist")))  # noqa: B009


def folded(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A case-insensitive pattern whose literals are lowercase, for ASCII-lowercased text."""
    source = pattern.pattern.removeprefix("(?i)")
    if not pattern.flags & re.IGNORECASE or re.search(r"(?<!\\)[A-Z]", source.replace("A-Z", "")):
        raise ValueError(f"not a case-insensitive pattern with lowercase literals: {source}")
    return re.compile(source, pattern.flags & ~re.IGNORECASE)
