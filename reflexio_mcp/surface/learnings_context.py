"""What Reflexio learned, brought into context without a tool call: the resources
reflexio://users/{user_id}/profile, reflexio://users/{user_id}/playbooks and
reflexio://playbooks/agent (registered only on a backend that learns), and the prompt
what_you_know_about_me (on the embedded store it answers that it needs REFLEXIO_URL).

Documents are compact JSON within `max_chars` (REFLEXIO_MCP_MAX_RESULT_CHARS): the oldest
learnings are left out first, and the document says how many. A pinned caller reads only its
own user's (agent playbooks are every user's, by design).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field

from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.core.learnings import (
    NEEDS_REFLEXIO,
    Learning,
    LearningKind,
    Learnings,
    learnings_of,
)
from reflexio_mcp.core.limits import MAX_QUERY_CHARS
from reflexio_mcp.core.search_text import bounded_query, has_words
from reflexio_mcp.surface.access_scope import acting_user_id, check_own_user
from reflexio_mcp.surface.prompts import DEFAULT_BUDGET_CHARS, budget_from
from reflexio_mcp.surface.resource_updates import AGENT_PLAYBOOKS_URI
from reflexio_mcp.surface.resources import USER_ID_RULES, check_user
from reflexio_mcp.surface.state import ToolContext, app_state

PROFILE_TEMPLATE = "reflexio://users/{user_id}/profile"
PLAYBOOKS_TEMPLATE = "reflexio://users/{user_id}/playbooks"
SHOWN = 100
"""A resource shows at most this many learnings of each kind."""
PROMPT_PROFILES = 30
PROMPT_PLAYBOOKS = 10
MAX_LINE_CHARS = 1000


def register_learnings_resources(
    server: MCPServer[Any], learnings: Learnings, *, default_user_id: str, max_chars: int
) -> None:
    """Add the learnings resources (see the module)."""

    @server.resource(
        PROFILE_TEMPLATE,
        name="user_profile",
        title="What Reflexio learned about a user",
        description=f"A user's current profiles (learned facts and preferences), newest first, "
        f"as compact JSON within {max_chars} characters.",
        mime_type="application/json",
        security=USER_ID_RULES,
    )
    async def user_profile(user_id: str) -> str:
        check_user(user_id)
        return await _document(learnings, user_id, "profile", max_chars)

    @server.resource(
        PLAYBOOKS_TEMPLATE,
        name="user_playbooks",
        title="A user's playbooks",
        description=f"The playbooks Reflexio learned from one user's conversations (when X, "
        f"do Y), newest first, as compact JSON within {max_chars} characters.",
        mime_type="application/json",
        security=USER_ID_RULES,
    )
    async def user_playbooks(user_id: str) -> str:
        check_user(user_id)
        return await _document(learnings, user_id, "user_playbook", max_chars)

    @server.resource(
        AGENT_PLAYBOOKS_URI,
        name="agent_playbooks",
        title="The agent's playbooks",
        description="The playbooks Reflexio aggregated across every user's conversations, "
        f"newest first, as compact JSON within {max_chars} characters.",
        mime_type="application/json",
    )
    async def agent_playbooks() -> str:
        return await _document(
            learnings, acting_user_id(default_user_id), "agent_playbook", max_chars
        )


def register_learnings_prompt(server: MCPServer[Any]) -> None:
    fn = what_you_know_about_me
    description = " ".join((fn.__doc__ or "").split())
    server.prompt(name=fn.__name__, title="What you know about me", description=description)(fn)


async def _document(learnings: Learnings, user_id: str, kind: LearningKind, max_chars: int) -> str:
    try:
        found = (await learnings.current(user_id, [kind], SHOWN)).learnings
    except ReflexioMcpError as err:
        raise ResourceError(str(err)) from err
    shown = list(found)
    while True:
        document: dict[str, Any] = {"count": len(shown)}
        if kind != "agent_playbook":
            document = {"user_id": user_id, **document}
        document["learnings"] = [_dumped(learning) for learning in shown]
        if len(shown) < len(found):
            document["left_out"] = len(found) - len(shown)
            document["more"] = "the oldest are left out to fit; search_learnings finds them"
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        if len(text) <= max_chars or not shown:
            return text
        shown.pop()


def _dumped(learning: Learning) -> dict[str, Any]:
    return learning.model_dump(mode="json", exclude_defaults=True, exclude={"kind", "user_id"})


async def what_you_know_about_me(
    ctx: ToolContext,
    topic: Annotated[str, Field(description="Playbooks about this first; omit for none.")] = "",
    user_id: Annotated[str, Field(description="Whose; omit for your own.")] = "",
    budget_chars: Annotated[
        str, Field(description=f"At most this much text (default {DEFAULT_BUDGET_CHARS}).")
    ] = "",
) -> str:
    """Open a session with what Reflexio learned about the user: profiles, and the playbooks
    relevant to a topic, within a size budget."""
    budget = budget_from(budget_chars)
    if len(topic) > MAX_QUERY_CHARS:
        raise _invalid(f"topic: at most {MAX_QUERY_CHARS} characters (got {len(topic)})")
    state = app_state(ctx)
    learnings = learnings_of(state.backend)
    if learnings is None:
        raise _invalid(NEEDS_REFLEXIO)
    check_own_user(user_id)
    user = state.user(user_id)
    query, _ = bounded_query(topic)
    try:
        profiles = (await learnings.current(user, ["profile"], PROMPT_PROFILES)).learnings
        kinds: list[LearningKind] = ["user_playbook", "agent_playbook"]
        if query and has_words(query):
            found = await learnings.search(user, query, kinds, PROMPT_PLAYBOOKS, "hybrid")
        else:
            found = await learnings.current(user, kinds, PROMPT_PLAYBOOKS)
    except ReflexioMcpError as err:
        raise MCPError(code=INTERNAL_ERROR, message=f"cannot tell what is known: {err}") from err
    if not profiles and not found.learnings:
        return (
            f"Reflexio has learned nothing yet about user {user!r}. Carry on; what they say now "
            "is all there is."
        )
    lines, left = _within(
        [*(_line(p) for p in profiles), *(_line(p) for p in found.learnings)], budget
    )
    more = (
        f"\n({left} more left out to keep this short: search_learnings finds them.)" if left else ""
    )
    about = f", with playbooks about {topic!r}" if query else ""
    return (
        f"What Reflexio learned about user {user!r}{about} (profiles first, then playbooks):\n"
        + "\n".join(lines)
        + more
        + "\n\nUse it to fit your answers to this user; do not recite it. If the user now says "
        "otherwise, the user now wins (delete_learning corrects a wrong one, with their consent)."
    )


def _line(learning: Learning) -> str:
    text = learning.content
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + " [cut]"
    trigger = learning.trigger
    when = f" (when {trigger})" if trigger and trigger not in text else ""
    return f"- [{learning.id}, {learning.learned_at[:10]}]{when} {text}"


def _within(lines: Sequence[str], budget: int) -> tuple[list[str], int]:
    kept: list[str] = []
    used = 0
    for line in lines:
        if kept and used + len(line) > budget:
            break
        kept.append(line[:budget])
        used += len(line)
    return kept, len(lines) - len(kept)


def _invalid(message: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message)
