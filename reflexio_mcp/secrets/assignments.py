"""Keyword assignments: `password = "..."`, `export API_KEY=...`, `"token": "..."`, `--password x`,
in code, shell, .env, JSON, YAML, INI and query strings. detect-secrets' KeywordDetector reasons
the same way, but its regexes take the rest of the line as the secret, find one hit per line and
pick quoted or unquoted forms by file name; this rule finds each name, then its value."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from reflexio_mcp.secrets.names import MAX_KEY, MAX_VALUE, key_kind, plausible
from reflexio_mcp.secrets.rules import Rule

_STEMS: Final = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "creds", "contrase")
_KEY_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-$ñÑ"
_KEY_RIGHT = re.compile(r"[A-Za-z0-9_.$ñÑ-]{0,64}")
# An unquoted value: up to a space, quote or bracket; `,;&` end it only before a space, the end
# or the next `name=` (query strings, connection strings), else they are part of it (`Tr0ub&3`).
_VALUE = (
    r"""(?:[^\s"'`\\,;&|<>(){}\[\]]++"""
    r"""|[,;&](?![\s"'`]|\Z|\\[nr"']|[A-Za-z_][\w.\[\]-]{0,64}=))++"""
)
_ASSIGN = re.compile(
    r"""
    (?P<close>\\?["'`]\]?|\]\\?["'`]?|\])?                  # the name's closing quote/bracket
    (?P<sp1>[ \t]*)
    (?P<op>
        :=|=>|===?|!==?
        |:[ \t]*[A-Za-z_][\w.\[\]|, ]{0,60}?[ \t]*=(?!=)(?=[ \t]*@?\\?["'`])   # `key: str = "x"`
        |=|:
    )
    (?P<sp2>[ \t]*)
    (?:
        @?(?P<q>\\?["'`])(?P<qv>[^\s"'`\\]++)(?P=q)
      | (?P<uv>"""
    + _VALUE
    + r""")
    )
    """,
    re.VERBOSE,
)
_OPERATOR = re.compile(r"""(?:\\?["'`]\]?|\]\\?["'`]?|\])?[ \t]*(?:[:=]|!=)""")
_FLAG_VALUE = re.compile(r" (?P<uv>(?![-,;&])" + _VALUE + ")")
_END_OF_LINE = re.compile(r"[ \t]*(?:[ \t]#[^\r\n]*)?(?:\r?\n|\\r?\\n|\Z)")


class KeywordRule(Rule):
    """A value assigned to a secret-like name, in code, shell, env, JSON, YAML, INI or a URL.

    Quoted values (`password = "x"`, `"token": "x"`, `api_key: str = "x"`) are literals. Unquoted
    ones count in `NAME=value` (env files, shell, `--password=x`, query strings, connection
    strings), in `NAME: value` / `NAME = value` only where the value ends the line (YAML, INI,
    headers; `Your password: must be long` is prose), and in `--password value`. An unquoted value
    that is a bare word, a dotted name or a call is a reference, not a secret.
    """

    priority = 2

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        hits: list[int] = []
        for stem in _STEMS:
            hit = lower.find(stem)
            while hit >= 0:
                hits.append(hit)
                hit = lower.find(stem, hit + len(stem))
        hits.sort()
        seen: set[int] = set()  # the ends of names looked at (`secret_key` has two stems)
        covered = 0  # the end of the last value looked at: a name inside it is part of it
        for hit in hits:
            if hit < covered:
                continue
            value = self._at(text, lower, hit, seen)
            if value is not None:
                start, covered, kind = value
                if kind is not None:
                    yield start, covered, kind

    def _at(
        self, text: str, lower: str, hit: int, seen: set[int]
    ) -> tuple[int, int, str | None] | None:
        """The value assigned to the name at `hit` and its kind (None: not a secret), if any."""
        right = _KEY_RIGHT.match(text, hit)
        end = right.end() if right else hit
        if end - hit >= MAX_KEY:
            return None
        while end > hit and text[end - 1] in ".-":
            end -= 1
        if end in seen:
            return None
        seen.add(end)
        # Cheap checks first: most stems (`tokens`, `the key`) are followed by no operator.
        flag = _OPERATOR.match(text, end) is None
        floor = hit - MAX_KEY if hit > MAX_KEY else 0
        if flag and (not text.startswith(" ", end) or lower.rfind("--", floor, hit) < 0):
            return None
        start = floor + len(text[floor:hit].rstrip(_KEY_CHARS))
        if start == floor and floor > 0 and text[floor - 1] in _KEY_CHARS:
            return None  # inside a long run (a hash, base64): not a name
        while start < hit and text[start] in ".-$":
            start += 1
        kind = key_kind(text[start:end])
        if kind is None or kind == "authorization":
            return None
        window = end + MAX_VALUE + 100  # a longer value is no secret of ours
        if flag:  # `--password value`
            value = _FLAG_VALUE.match(text, end, window)
            if value is None or not text.startswith("--", start - 2):
                return None
            value_start, value_end = value.span("uv")
            quoted = False
        else:
            assign = _ASSIGN.match(text, end, window)
            if assign is None:
                return None
            if assign.group("qv") is not None:
                value_start, value_end = assign.span("qv")
                quoted = True
            else:
                value_start, value_end = assign.span("uv")
                quoted = False
                op = assign.group("op")
                tight = op == "=" and not (assign.group("sp1") or assign.group("sp2"))
                if (
                    not tight
                    and not (op in (":", "=", ":=") and _END_OF_LINE.match(text, value_end))
                ) or text.startswith(("(", "["), value_end):
                    return value_start, value_end, None  # prose; password=getpass()
        if not plausible(text[value_start:value_end], kind, quoted=quoted):
            return value_start, value_end, None
        return value_start, value_end, kind
