"""Private keys: a PEM block (RSA, EC, DSA, OPENSSH, PGP, PKCS#8, SSH2) from its BEGIN line to
its END line, or, if cut off, over the base64 lines that follow. Imports detect-secrets: only
the rule build (`scanner.prepare`) imports this module."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

from detect_secrets.plugins.private_key import PrivateKeyDetector

from reflexio_mcp.secrets.rules import Rule, denylist


class PrivateKeyBlockDetector(PrivateKeyDetector):
    """1.5.0 flags the BEGIN line only; redaction needs the whole block. This finds the BEGIN
    armor of any private key (also PKCS#8 `ENCRYPTED PRIVATE KEY`); `PemBlockRule` extends
    it to the matching END line (or, if cut off, over the base64 lines that follow)."""

    denylist = [  # noqa: RUF012
        re.compile(r"-{4,5} ?BEGIN (?P<label>(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?) ?-{4,5}")
    ]


_PEM_BODY = re.compile(
    r"(?:(?:\r?\n|\\r?\\n)[ \t]*(?:[A-Za-z0-9+/=]{1,100}|[A-Za-z-]{2,30}: ?[^\r\n\\]{0,200})"
    r"(?=\r?\n|\\r?\\n|\Z|[ \t\"'`]))+"
)
_MAX_PEM_CHARS = 200_000


class PemBlockRule(Rule):
    """A private key block, BEGIN to END; without an END (output cut off), its base64 lines."""

    priority = 0

    def __init__(self, begin: re.Pattern[str]) -> None:
        self._begin = begin

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        if "PRIVATE KEY" not in text:
            return
        ends: dict[str, list[tuple[int, int]]] = {}
        for begin in self._begin.finditer(text):
            label = begin.group("label")
            if label not in ends:  # one pass per label, so many BEGINs stay linear
                armor = re.compile(r"-{4,5} ?END " + re.escape(label) + r" ?-{4,5}")
                ends[label] = [m.span() for m in armor.finditer(text)]
            closes = ends[label]
            at = bisect.bisect_left(closes, (begin.end(), 0))
            if at < len(closes) and closes[at][0] - begin.end() <= _MAX_PEM_CHARS:
                yield begin.start(), closes[at][1], "private-key"
                continue
            body = _PEM_BODY.match(text, begin.end())
            if body is not None and sum(c.isalnum() for c in body.group()) >= 40:
                yield begin.start(), body.end(), "private-key"


def pem_rules() -> list[Rule]:
    (begin,) = denylist(PrivateKeyBlockDetector)
    return [PemBlockRule(begin)]
