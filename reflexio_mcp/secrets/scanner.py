"""Where the secrets in a text are (`find_secrets`), and the text with them replaced by markers
(`redact_text`): the scan that runs every rule family over a text and settles their overlaps.

How. The vendor patterns are detect-secrets' plugins (the compiled regexes in their `denylist`,
read through a small typed seam), plus a few narrowly-scoped detectors written as subclasses of
its plugins for what 1.5.0 lacks or gets wrong for redaction (each says why): GitHub
fine-grained tokens, Stripe test keys, OpenAI project/service keys, Anthropic keys, Google API
keys, Hugging Face tokens, whole PEM blocks, unquoted AWS secret keys, signed-URL signatures,
`Authorization` headers, and `name = value` assignments (a keyword rule). Its scanning entry
points (`scan_line`, `SecretsCollection`, `analyze_line`) are not used: they read process-wide
settings (`transient_settings` swaps a global, so it is not thread-safe), cost a settings lookup
and object construction per line, may run `verify()` (network calls), and report values, not
positions. Here each regex runs once over a whole publish: its strings joined by newlines (no
rule matches across a newline but a PEM block, whose strings are then scanned alone), so a 1 MB
single line, a multi-line key or ten thousand small tool-data strings cost one linear pass per
regex. Regexes start with a literal where they can (several times faster in `re`), are skipped
when their literal is absent, and try a run of token characters once, not at every offset: no
input makes the scan quadratic. Where detectors overlap the most specific wins (a known token
shape, then a structural rule, then a keyword assignment). The rule set is built once (importing
detect-secrets, with `requests` left out, takes ~10 ms and 0.8 MiB): the server starts that in a
thread of its own once start-up is over (`prepare_in_background`); whatever needs the rules
first otherwise builds them, or waits for the build under way. After that they are only read:
scanning is thread-safe. Existing markers are never secrets, so redacting twice changes nothing
more. Nothing here logs, and nothing raises of its own; no secret value appears in anything
returned (but the text it was not recognised in).

The rule families, one module each: `tokens` (known token shapes, and secrets inside a URL or
config line, from detect-secrets plugins), `pem` (private key blocks), `headers`
(`Authorization` and `Bearer`), `assignments` (a value assigned to a secret-like name), with
`names` (which names and values are secret-like) and `rules` (the shape of a rule).
"""

from __future__ import annotations

import bisect
import logging
import re
import sys
import threading
import types
import warnings
from collections import Counter
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from reflexio_mcp.secrets.assignments import KeywordRule
from reflexio_mcp.secrets.headers import AuthorizationRule
from reflexio_mcp.secrets.rules import PatternRule, Rule

KINDS: Final = frozenset(
    {
        "private-key", "aws-access-key", "aws-secret-key", "github-token", "gitlab-token",
        "slack-token", "slack-webhook", "stripe-key", "openai-key", "anthropic-key",
        "google-api-key", "huggingface-token", "jwt", "sendgrid-key", "pypi-token", "npm-token",
        "twilio-key", "mailchimp-key", "discord-token", "telegram-token", "azure-storage-key",
        "square-secret", "url-password", "url-signature", "bearer-token", "basic-auth",
        "password", "secret", "api-key", "token",
    }
)  # fmt: skip
"""Every kind a marker can name."""

SHORT_MARKER: Final = "[REDACTED]"
"""Used instead of `[REDACTED:<kind>]` only where those would push a field past its length limit."""

_MARKER = re.compile(r"\[REDACTED(?::[a-z0-9-]{1,40})?\]")


def marker(kind: str) -> str:
    """What a secret of this kind is replaced with."""
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Finding:
    """Where a secret is in a text, and its kind; never its value."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class _RuleSet:
    patterns: tuple[PatternRule, ...]
    rules: tuple[Rule, ...]


_BUILD_LOCK = threading.Lock()
_built: _RuleSet | None = None
_START_LOCK = threading.Lock()
_building: threading.Thread | None = None


def prepare() -> None:
    """Import detect-secrets and build the rules (~10 ms, 0.8 MiB), if not done yet; if a
    build is under way, wait for it."""
    _rule_set()


def prepared() -> bool:
    """Whether the rules are built (scanning no longer loads anything, nor waits)."""
    return _built is not None


def prepare_in_background(after: threading.Event | None = None, at_most: float = 0) -> None:
    """Start `prepare` in a thread of its own, unless the rules are built or being built; with
    `after`, the thread waits for it to be set (`at_most` seconds) before it begins."""
    global _building
    with _START_LOCK:
        if _built is None and _building is None:
            _building = threading.Thread(
                target=_prepare_after,
                args=(after, at_most),
                name="reflexio-mcp-secret-rules",
                daemon=True,
            )
            _building.start()


def _prepare_after(after: threading.Event | None, at_most: float) -> None:
    if after is not None:
        after.wait(at_most)
    prepare()


def _rule_set() -> _RuleSet:
    global _built
    rules = _built
    if rules is None:
        with _BUILD_LOCK:
            rules = _built
            if rules is None:
                rules = _built = _build()
    return rules


def _build() -> _RuleSet:
    """One builder per rule family. Imported here: these two import detect-secrets."""
    shown = warnings.showwarning
    with _requests_left_out():
        from reflexio_mcp.secrets import pem, tokens

    if warnings.showwarning is not shown:
        # detect_secrets.core.log calls logging.captureWarnings(True) on import: the process's
        # warnings are not ours to reroute.
        logging.captureWarnings(False)
    return _RuleSet(
        patterns=(*tokens.token_rules(), *tokens.syntax_rules()),
        rules=(*pem.pem_rules(), AuthorizationRule(), KeywordRule()),
    )


class _NoRequests(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"requests.{name}: detect-secrets' verify() is never used here")


@contextmanager
def _requests_left_out() -> Generator[None]:
    """While detect-secrets is imported, `requests` is a module that refuses any use.

    Its plugins import requests (with urllib3, charset_normalizer, certifi: 5.7 MiB and most
    of the import's time) for `verify()` alone, which makes network calls and is never called
    here; the stand-in makes sure of that. Left in place only while detect-secrets imports: any
    later `import requests` in the process gets the real one."""
    if "requests" in sys.modules:
        yield
        return
    stand_in = _NoRequests("requests")
    sys.modules["requests"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("requests") is stand_in:
            del sys.modules["requests"]


def find_secrets(text: str) -> list[Finding]:
    """Where the secrets in `text` are: in order, none overlapping; positions and kinds only.

    Where detectors overlap, the more specific wins (a known token shape over a structural rule
    such as `Authorization:` over a keyword assignment); existing markers are never findings.
    """
    if not text:
        return []
    rules = _rule_set()
    lower = _ascii_lower(text)
    levels: list[list[tuple[int, int, str | None]]] = [[], [], [], []]
    if "[REDACTED" in text:  # idempotent: a marker is never a secret, nor part of one
        levels[0] = [(m.start(), m.end(), None) for m in _MARKER.finditer(text)]
    for rule in rules.patterns:
        levels[rule.priority + 1] += ((s, e, rule.kind) for s, e in rule.spans(text, lower))
    for custom in rules.rules:
        levels[custom.priority + 1] += custom.find(text, lower)
    taken: list[tuple[int, int, str | None]] = []  # sorted by start, disjoint
    for level in levels:
        level.sort(key=lambda c: (c[0], -c[1]))
        chosen: list[tuple[int, int, str | None]] = []
        at, end = 0, 0
        for candidate in level:
            if candidate[0] < end:
                continue  # overlaps one chosen at this level
            while at < len(taken) and taken[at][1] <= candidate[0]:
                at += 1
            if at < len(taken) and taken[at][0] < candidate[1]:
                continue  # overlaps one chosen at a more specific level
            chosen.append(candidate)
            end = candidate[1]
        taken = sorted(taken + chosen, key=lambda c: c[0])  # two sorted runs: linear
    return [Finding(start, end, kind) for start, end, kind in taken if kind is not None]


def _ascii_lower(text: str) -> str:
    """`text` with A-Z lowercased and every character at its index (str.lower can move them)."""
    if text.isascii():
        return text.lower()
    return text.encode("ascii", "replace").decode("ascii").lower()


def apply(text: str, found: Sequence[Finding], *, short: bool = False) -> str:
    """`text` with each finding replaced by its marker (`short`: all by `[REDACTED]`)."""
    parts: list[str] = []
    last = 0
    for finding in found:
        parts += (text[last : finding.start], SHORT_MARKER if short else marker(finding.kind))
        last = finding.end
    parts.append(text[last:])
    return "".join(parts)


def redact_text(text: str, *, limit: int | None = None) -> tuple[str, Counter[str]]:
    """`text` with its secrets replaced, and how many of each kind; at most `limit` characters.

    Where the markers would make it longer than `limit`, `[REDACTED]` is used instead, and if
    even that is too long the text is cut at `limit` (after every secret in it is gone).
    """
    found = find_secrets(text)
    counts = Counter(f.kind for f in found)
    if not found:
        return text, counts
    redacted = apply(text, found)
    if limit is not None and len(redacted) > limit:
        redacted = apply(text, found, short=True)[:limit]
    return redacted, counts


def find_secrets_in(texts: Sequence[str]) -> list[list[Finding]]:
    """`find_secrets` for each text, as if each were scanned alone, in one pass over them all."""
    if len(texts) <= 1:
        return [find_secrets(text) for text in texts]
    starts: list[int] = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 1
    per_text: list[list[Finding]] = [[] for _ in texts]
    alone: set[int] = set()
    for finding in find_secrets("\n".join(texts)):
        at = bisect.bisect_right(starts, finding.start) - 1
        start = starts[at]
        if finding.end > start + len(texts[at]):  # across texts: scan those alone
            alone.update(range(at, bisect.bisect_left(starts, finding.end)))
            continue
        per_text[at].append(Finding(finding.start - start, finding.end - start, finding.kind))
    for at in alone:
        per_text[at] = find_secrets(texts[at])
    return per_text
