"""What every reader of a transcript or file yields: exchanges to publish, and lines skipped."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath

from reflexio_mcp.core.models import InteractionData

SKIPPED_KEPT = 20
REASONS_KEPT = 50
TOOL_INPUT_CHARS = 300
"""A tool call's input is kept as a summary of at most this many characters, not a dump."""


@dataclass(frozen=True)
class Exchange:
    """One publish: a user's prompt and what the agent did and answered, or one object of a
    Reflexio CLI payload. Its request_id is derived from what identifies it in the file (the
    message uuids), so reading the same file twice publishes nothing twice."""

    request_id: str
    session_id: str
    turns: list[InteractionData]
    source: str = ""
    agent_version: str = ""
    user_id: str | None = None
    """The user the file names (a Reflexio CLI payload); None: the settings' user."""
    resume_at: int = 0
    """Byte offset in its file from which reading finds only later exchanges."""


@dataclass(frozen=True)
class Skipped:
    """A line or object that could not be read, and why (counted in the import's summary)."""

    where: str
    """file:line"""
    reason: str


@dataclass
class Tally:
    """What an import or a hook run did, for its summary."""

    files: int = 0
    sessions: set[str] = field(default_factory=set[str])
    stored: int = 0
    """Turns stored (or queued for Reflexio) by this run."""
    queued: int = 0
    """Of them, turns left in the outbox for Reflexio (delivered in the background)."""
    already_stored: int = 0
    """Turns an earlier run had stored: nothing stored twice."""
    skipped: list[Skipped] = field(default_factory=list[Skipped])
    """The first SKIPPED_KEPT skipped; the rest are counted (memory stays bounded)."""
    skipped_total: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter[str])
    redacted: int = 0

    def skip(self, item: Skipped) -> None:
        self.skipped_total += 1
        if len(self.skipped) < SKIPPED_KEPT:
            self.skipped.append(item)
        reason = (
            item.reason
            if item.reason in self.skip_reasons or len(self.skip_reasons) < REASONS_KEPT
            else "other reasons"
        )
        self.skip_reasons[reason] += 1


def project_key(cwd: str) -> str:
    """The project a session ran in, as part of its session_id: the folder's name (letters,
    digits, `._-`) and a hash of its whole path, so two checkouts named alike stay apart."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in PurePath(cwd).name)[:40]
    digest = hashlib.sha256(cwd.encode(errors="surrogatepass")).hexdigest()[:8]
    return f"{name or 'root'}-{digest}"


def session_id_of(agent: str, cwd: str, session: str) -> str:
    """`<agent>:<project>:<the agent's own session id>`, e.g.
    `claude-code:reflexio-mcp-1a2b3c4d:6f1e...`: recall finds a project's sessions by prefix."""
    return f"{agent}:{project_key(cwd)}:{session}"[:256]


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id from the parts that identify a thing in its file."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"{prefix}-{digest}"


def tool_summary(value: object, limit: int = TOOL_INPUT_CHARS) -> str:
    """A tool call's input as one bounded line."""
    text = value if isinstance(value, str) else _compact_json(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact_json(value: object) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        return "(input not shown: not JSON, or nested too deeply)"
