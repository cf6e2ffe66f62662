"""MCP prompts, offered by clients as slash commands: bring past conversations into this one,
and publish this one the right way."""

from __future__ import annotations

from typing import Annotated, Any, cast

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field, ValidationError

from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.core.invalid_input import invalid_input_text
from reflexio_mcp.core.learnings import NEEDS_REFLEXIO, learnings_of
from reflexio_mcp.core.limits import MAX_QUERY_CHARS
from reflexio_mcp.core.models import Interaction, SearchRequest
from reflexio_mcp.core.search_text import bounded_query, has_words
from reflexio_mcp.surface.access_scope import check_own_user
from reflexio_mcp.surface.state import AppState, ToolContext, app_state

RECALL_TURNS = 20
DEFAULT_BUDGET_CHARS = 8000
"""About 2,000 tokens: enough to recall, small enough to leave the context to the task."""
MIN_BUDGET_CHARS = 500
MAX_BUDGET_CHARS = 100_000
MAX_TURN_CHARS = 1500
RECALL_NEEDS_TOPIC = "topic: required; say what to recall, e.g. the project's deadline"


PROMPTS = ("recall", "remember_this_conversation", "what_you_know_about_me")
LEARNING_PROMPTS = ("what_you_know_about_me",)
"""Registered only on a backend that learns (Reflexio)."""


async def prompt_arguments(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """A ServerMiddleware: a prompts/get naming a prompt this server lacks, or an argument the
    prompt does not take, is refused in words as invalid params (the SDK would answer
    "Internal server error", or error code 0 on the wire)."""
    if ctx.method == "prompts/get" and ctx.params:
        name: Any = ctx.params.get("name")
        arguments: Any = ctx.params.get("arguments") or {}
        learns = learnings_of(getattr(ctx.lifespan_context, "backend", None)) is not None
        offered = [p for p in PROMPTS if learns or p not in LEARNING_PROMPTS]
        if isinstance(name, str) and name not in PROMPTS:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"unknown prompt {name[:100]!r}: this server's prompts are "
                f"{', '.join(offered)}",
            )
        if name in LEARNING_PROMPTS and not learns:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"{name} is not enabled on this server: {NEEDS_REFLEXIO}",
            )
        if name in PROMPTS and isinstance(arguments, dict):
            accepted = ARGUMENTS[name]
            unknown = [
                str(key)[:100] for key in cast(dict[Any, Any], arguments) if key not in accepted
            ]
            if unknown:
                raise _invalid(
                    f"{', '.join(unknown)}: not an argument of {name}; it takes: "
                    f"{', '.join(accepted) or 'no arguments'}"
                )
            if name == "recall" and "topic" not in arguments:  # the SDK: "Internal server error"
                raise _invalid(RECALL_NEEDS_TOPIC)
    return await call_next(ctx)


def register_prompts(server: MCPServer[AppState]) -> None:
    for fn, title in [
        (recall, "Recall past conversations"),
        (remember_this_conversation, "Remember this conversation"),
    ]:
        description = " ".join((fn.__doc__ or "").split())
        server.prompt(name=fn.__name__, title=title, description=description)(fn)


async def recall(
    ctx: ToolContext,
    topic: Annotated[str, Field(description="What to recall.")],
    user_id: Annotated[str, Field(description="Whose conversations; omit for your own.")] = "",
    budget_chars: Annotated[
        str, Field(description=f"At most this much recalled text (default {DEFAULT_BUDGET_CHARS}).")
    ] = "",
) -> str:
    """Bring what was said before about a topic into this conversation (best matches first,
    within a size budget)."""
    # Prompt arguments arrive as strings, and the SDK would answer a bad one with a bare
    # "Internal server error": they are checked here, in words.
    budget = budget_from(budget_chars)
    if not topic.strip():
        raise _invalid(RECALL_NEEDS_TOPIC)
    if len(topic) > MAX_QUERY_CHARS:
        raise _invalid(f"topic: at most {MAX_QUERY_CHARS} characters (got {len(topic)})")
    state = app_state(ctx)
    check_own_user(user_id)
    user = state.user(user_id)
    query, _ = bounded_query(topic)
    found: list[Interaction] = []
    if query and has_words(query):
        try:
            found = (
                await state.backend.search_interactions(
                    SearchRequest(user_id=user, query=query, top_k=RECALL_TURNS)
                )
            ).interactions
        except ValidationError as err:
            raise _invalid(err) from None
        except ReflexioMcpError as err:
            raise MCPError(code=INTERNAL_ERROR, message=f"cannot recall: {err}") from err
    if not found:
        return (
            f"Nothing was found about {topic!r} in the past conversations of user {user!r}. "
            "Say so if it matters, and carry on without it."
        )
    lines: list[str] = []
    used = 0
    for turn in found:
        text = (
            turn.content
            if len(turn.content) <= MAX_TURN_CHARS
            else (turn.content[:MAX_TURN_CHARS] + " [cut]")
        )
        line = f"- [{turn.time}] {turn.role}: {text}"
        if lines and used + len(line) > budget:
            break
        lines.append(line)
        used += len(line)
    left = len(found) - len(lines)
    more = (
        f"\n({left} more matching turns were left out to keep this short: call "
        f"search_interactions with query {query!r} to see them.)"
        if left
        else ""
    )
    return (
        f"Here is what was said before about {topic!r} (user {user!r}; {len(lines)} turns, best "
        f"match first):\n" + "\n".join(lines) + more + "\n\nUse what is relevant; do not "
        "repeat it back unless asked. If it contradicts the user now, the user now wins."
    )


def budget_from(text: str) -> int:
    """A prompt's budget_chars argument, checked."""
    if not text.strip():
        return DEFAULT_BUDGET_CHARS
    try:
        budget = int(text)
    except ValueError:
        raise _invalid(f"budget_chars: must be a whole number (got {text[:20]!r})") from None
    if not MIN_BUDGET_CHARS <= budget <= MAX_BUDGET_CHARS:
        raise _invalid(
            f"budget_chars: must be between {MIN_BUDGET_CHARS} and {MAX_BUDGET_CHARS} "
            f"(got {budget})"
        )
    return budget


def _invalid(problem: ValidationError | str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=invalid_input_text(problem))


def remember_this_conversation(
    session_id: Annotated[
        str, Field(description="Groups this conversation's publishes; omit for the server's.")
    ] = "",
) -> str:
    """Publish the current conversation to memory, with roles, tools used and corrections."""
    session = f' and session_id "{session_id}"' if session_id else ""
    return (
        "Publish this conversation so it is remembered: call the publish_interaction tool once, "
        f"with `interactions`{session}, listing the turns worth keeping, oldest first:\n"
        '- each turn\'s `role` ("user" or "assistant") and its `content`, in the words used '
        "(no summary); leave out greetings and chatter;\n"
        "- where the user corrected an answer, put the corrected answer in that assistant "
        "turn's `expert_content`;\n"
        "- tools the assistant used in a turn go in its `tools_used` "
        '([{"tool_name": ..., "tool_data": {...}}]), without secrets, keys or passwords;\n'
        "- a fresh `request_id` (any unique string) so that a retry stores nothing twice.\n"
        "Then tell the user in one line what was stored (the tool's `stored` count and "
        "`status`). If the tool answers `queued`, say it will be delivered shortly."
    )


ARGUMENTS: dict[str, tuple[str, ...]] = {
    "recall": ("topic", "user_id", "budget_chars"),
    "remember_this_conversation": ("session_id",),
    "what_you_know_about_me": ("topic", "user_id", "budget_chars"),
}
