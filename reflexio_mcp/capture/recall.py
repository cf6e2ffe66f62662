"""What a session starts knowing: a short, bounded text for Claude Code to put before the model.

On Reflexio: the user's profiles and playbooks (what it learned), then turns. Turns: with a
prompt, those that match it, this project's first; without one (session start), the latest
turns of this project's latest earlier sessions. Every line is cut to fit `budget` characters
in all, and the whole text goes through the secret scanner once more before it is printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from reflexio_mcp.capture.claude_code import AGENT
from reflexio_mcp.capture.conversation import project_key
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.core.learnings import learnings_of
from reflexio_mcp.core.models import Interaction, SearchRequest
from reflexio_mcp.secrets.scanner import redact_text

BUDGET_CHARS = 2000
LINE_CHARS = 240
SESSIONS = 3
TURNS_PER_SESSION = 4
MATCHES = 6
LEARNINGS = 5
HEADER = "Memory from earlier sessions (reflexio-mcp; search_interactions finds more):"


async def recall(
    backend: Backend,
    user_id: str,
    *,
    cwd: str,
    prompt: str | None,
    current_session: str,
    budget: int = BUDGET_CHARS,
) -> str:
    """The context to inject; "" when nothing is known."""
    prefix = f"{AGENT}:{project_key(cwd)}:" if cwd else f"{AGENT}:"
    lines: list[str] = []
    lines += await _learned(backend, user_id, prompt)
    if prompt:
        turns = await _matching(backend, user_id, prompt, prefix, current_session)
    else:
        turns = await _latest(backend, user_id, prefix, current_session)
    lines += [_turn_line(turn) for turn in turns]
    if not lines:
        return ""
    # Before the cut to fit: a secret cut in two is no longer recognised, and its first half shows.
    lines = [redact_text(line)[0] for line in lines]
    text = _fitted([HEADER, *lines], budget)
    return redact_text(text, limit=budget)[0]


async def _learned(backend: Backend, user_id: str, prompt: str | None) -> list[str]:
    learnings = learnings_of(backend)
    if learnings is None:
        return []
    kinds = ("profile", "user_playbook", "agent_playbook")
    try:
        if prompt:
            found = await learnings.search(user_id, prompt, kinds, LEARNINGS, "hybrid")
        else:
            found = await learnings.current(user_id, kinds, LEARNINGS)
    except ReflexioMcpError:
        return []
    return [
        f"- {learning.kind.replace('_', ' ')}: {learning.content}" for learning in found.learnings
    ]


async def _latest(
    backend: Backend, user_id: str, prefix: str, current_session: str
) -> list[Interaction]:
    known = await backend.session_ids(user_id, prefix, SESSIONS + 1)
    turns: list[Interaction] = []
    for session in [s for s in known.values if not s.endswith(f":{current_session}")][:SESSIONS]:
        newest = await backend.session_interactions(user_id, session, TURNS_PER_SESSION)
        turns += reversed(newest)
    return turns


async def _matching(
    backend: Backend, user_id: str, prompt: str, prefix: str, current_session: str
) -> list[Interaction]:
    request = SearchRequest(user_id=user_id, query=prompt[:1000], top_k=MATCHES * 2)
    found = (await backend.search_interactions(request)).interactions
    earlier = [t for t in found if not t.session_id.endswith(f":{current_session}")]
    here = [t for t in earlier if t.session_id.startswith(prefix)]
    elsewhere = [t for t in earlier if not t.session_id.startswith(prefix)]
    return (here + elsewhere)[:MATCHES]


def _turn_line(turn: Interaction) -> str:
    text = " ".join(turn.content.split()) or ", ".join(t.tool_name for t in turn.tools_used)
    return f"- {turn.time[:10]} {turn.role}: {text}"


def _fitted(lines: Sequence[str], budget: int) -> str:
    """The lines, each at most LINE_CHARS, as many as fit in `budget` with their newlines."""
    kept: list[str] = []
    used = 0
    for line in lines:
        cut = line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"
        if used + len(cut) + 1 > budget:
            break
        kept.append(cut)
        used += len(cut) + 1
    return "\n".join(kept) if len(kept) > 1 else ""
