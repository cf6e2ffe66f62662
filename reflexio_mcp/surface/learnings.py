"""The learnings tools: search_learnings (what Reflexio learned about a user, by a query or
as it stands) and delete_learning (delete or correct one, once the user agrees).

Registered only on a backend that learns (Reflexio); on the embedded store a call answers
that they need REFLEXIO_URL (app.py's not_enabled). Answers are compact: the text content is
the result as JSON without empty fields or indentation.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    Elicit,
    ElicitationResult,
    Resolve,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field, StrictBool

from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.core.fields import Between, SearchMode
from reflexio_mcp.core.learnings import (
    KINDS,
    NEEDS_REFLEXIO,
    Learning,
    LearningKind,
    Learnings,
    learned_text,
    learnings_of,
    split_learning_id,
)
from reflexio_mcp.core.limits import MAX_CONTENT_CHARS, MAX_QUERY_CHARS
from reflexio_mcp.core.models import PublishStatus
from reflexio_mcp.core.search_text import bounded_query, has_words
from reflexio_mcp.surface.access_scope import caller_role
from reflexio_mcp.surface.arguments import OptionalUserId, reported_to_model
from reflexio_mcp.surface.deletion import Confirm, can_ask, not_agreed
from reflexio_mcp.surface.state import AppState, ToolContext, app_state

PREVIEW_CHARS = 300
MAX_PER_KIND = 100
MAX_LEARNING_ID_CHARS = 300
"""A kind, a colon and Reflexio's id (a UUID or a number)."""
TOOLS = ("search_learnings", "delete_learning")

Kinds = Annotated[
    list[LearningKind],
    Field(description="Only these kinds."),
]
LearningId = Annotated[
    str, Field(min_length=1, max_length=MAX_LEARNING_ID_CHARS, description="From search_learnings.")
]


class LearningList(BaseModel):
    """What search_learnings found."""

    user_id: str
    count: int
    learnings: list[Learning]
    search_mode: str | None = None
    note: str | None = None


class LearningChange(BaseModel):
    """What delete_learning did."""

    status: Literal["deleted", "corrected", "declined", "cancelled", "kept"]
    learning: Learning | None = None
    message: str


class Consent(BaseModel):
    """The user's answer to "delete (or correct) this learning?"."""

    agree: StrictBool = Field(description="Make this change")
    """Strict: only a JSON true is consent."""


def compact(result: BaseModel) -> CallToolResult:
    """The result as structured content, and as compact JSON text without empty fields."""
    structured = result.model_dump(mode="json")
    text = json.dumps(_without_empty(structured), ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured
    )


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_empty(item)
            for key, item in value.items()  # pyright: ignore[reportUnknownVariableType]
            if item not in (None, "", [], {})
        }
    if isinstance(value, list):
        return [_without_empty(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


async def with_learning(state: AppState, status: PublishStatus) -> PublishStatus:
    """A delivered publish's status with how learning from it stands, on a backend that
    learns; a failure to ask leaves the status as it was (it is about the publish)."""
    learnings = learnings_of(state.backend)
    if learnings is None or status.status != "delivered":
        return status
    try:
        stage, reason = await learnings.status(status.request_id)
        learned: list[Learning] = []
        if stage == "done":
            learned = await learnings.from_publish(status.user_id, status.request_id)
    except ReflexioMcpError as err:
        return status.model_copy(update={"learning": f"unknown: Reflexio could not say ({err})"})
    profiles = sum(1 for learning in learned if learning.kind == "profile")
    text = learned_text(profiles, len(learned) - profiles)
    return status.model_copy(update={"learning": " / ".join(s for s in (stage, reason, text) if s)})


def _learnings(state: AppState) -> Learnings:
    learnings = learnings_of(state.backend)
    if learnings is None:
        raise ToolError(NEEDS_REFLEXIO)
    return learnings


async def search_learnings(
    ctx: ToolContext,
    query: Annotated[
        str,
        Field(max_length=MAX_QUERY_CHARS, description="Words to find; omit to list."),
    ] = "",
    kinds: Kinds = [],  # noqa: B006 (pydantic copies defaults)
    top_k: Annotated[int, Between(1, MAX_PER_KIND), Field(description="Max per kind.")] = 10,
    search_mode: Annotated[SearchMode, Field(description="fts: full-text.")] = "hybrid",
    user_id: OptionalUserId = "",
) -> Annotated[CallToolResult, LearningList]:
    """Find what Reflexio learned about a user (profiles, playbooks); no query: the current
    ones. Each names the publish and turns it came from."""
    state = app_state(ctx)
    learnings = _learnings(state)
    user = state.user(user_id)
    wanted: list[LearningKind] = [kind for kind in KINDS if not kinds or kind in kinds]
    sent, note = bounded_query(query)
    with reported_to_model():
        if sent is None:
            found = await learnings.current(user, wanted, top_k)
        elif not has_words(sent):
            return compact(
                LearningList(
                    user_id=user, count=0, learnings=[], note="the query has no words to search for"
                )
            )
        else:
            found = await learnings.search(user, sent, wanted, top_k, search_mode)
    notes = [text for text in (note, *found.notes) if text]
    return _fitted(state, user, found.learnings, found.search_mode, notes)


def _fitted(
    state: AppState,
    user: str,
    found: list[Learning],
    search_mode: str | None,
    notes: list[str],
) -> CallToolResult:
    """The answer within the result budget: the last learnings left out until it fits."""
    shown = list(found)
    while True:
        left = len(found) - len(shown)
        more = [f"{left} more left out to fit the result size; ask with a smaller top_k"]
        answer = compact(
            LearningList(
                user_id=user,
                count=len(shown),
                learnings=shown,
                search_mode=search_mode,
                note="; ".join([*notes, *(more if left else [])]) or None,
            )
        )
        text = answer.content[0]
        if not shown or (
            isinstance(text, TextContent) and len(text.text) <= state.max_result_chars
        ):
            return answer
        shown.pop()


async def confirm_learning_change(
    ctx: ToolContext,
    learning_id: str,
    correction: str = "",
    user_id: str = "",
    confirm: bool = False,
) -> Consent | Elicit[Consent]:
    """Resolver: the user's consent, asked with what will change, unless the server does not
    confirm deletes. An agent playbook (every user's) needs role admin."""
    state = app_state(ctx)
    learnings = _learnings(state)
    with reported_to_model():
        kind, _ = split_learning_id(learning_id)
        if kind == "agent_playbook" and caller_role.get() != "admin":
            raise ToolError(
                "not changed: agent playbooks are shared by every user, so changing one needs "
                "role admin (an admin access token, or --allow-admin)"
            )
        target = await learnings.find(state.user(user_id), learning_id)
    if not state.confirm_deletes:
        return Consent(agree=True)
    question = _question(target, correction)
    if can_ask(ctx):
        return Elicit(question, Consent)
    if confirm:
        return Consent(agree=True)
    raise ToolError(
        "not changed: this needs the user's consent and this client cannot ask for it. Show "
        f"the user the question ({question}) and, only if they agree, call delete_learning "
        "again with confirm=true"
    )


async def delete_learning(
    ctx: ToolContext,
    learning_id: LearningId,
    consent: Annotated[ElicitationResult[Consent], Resolve(confirm_learning_change)],
    correction: Annotated[
        str, Field(max_length=MAX_CONTENT_CHARS, description="Replace its content instead.")
    ] = "",
    user_id: OptionalUserId = "",
    confirm: Confirm = False,
) -> Annotated[CallToolResult, LearningChange]:
    """Delete or correct a learned profile or playbook the user says is wrong, once they
    agree (agent playbooks: admin only)."""
    state = app_state(ctx)
    learnings = _learnings(state)
    match consent:
        case AcceptedElicitation(data=Consent(agree=True)):
            owner = state.user(user_id)
            with reported_to_model():
                if correction.strip():
                    changed = await learnings.correct(owner, learning_id, correction)
                    return compact(
                        LearningChange(
                            status="corrected", learning=changed, message=f"corrected {learning_id}"
                        )
                    )
                deleted = await learnings.delete(owner, learning_id)
            return compact(
                LearningChange(status="deleted", learning=deleted, message=f"deleted {learning_id}")
            )
        case _:
            status, why = not_agreed(consent, "change it")
    return compact(
        LearningChange(status=status, message=f"nothing changed: {why}; {learning_id} is kept")
    )


def _question(target: Learning, correction: str) -> str:
    text = target.content
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + "…"
    whose = f" of user {target.user_id!r}" if target.user_id else " (shared by every user)"
    what = f"{target.id}{whose}, learned {target.learned_at}: {text!r}"
    if correction.strip():
        new = correction if len(correction) <= PREVIEW_CHARS else correction[:PREVIEW_CHARS] + "…"
        return f"Correct this {target.kind}?\n\n{what}\n\nto: {new!r}"
    return f"Delete this {target.kind} permanently?\n\n{what}"
