"""The publishing tools: one conversation (publish_interaction) or several (publish_batch).

Every publish goes the same way: its turns are checked, secrets in them are replaced by
markers (unless the server runs with --keep-secrets), and the backend stores or queues it.
A publish that waits for learning reports progress while it waits, and stops waiting when
the client cancels (the publish itself stays in the outbox and is delivered).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, cast

import anyio
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema

from reflexio_mcp.core.errors import InvalidInput, OutboxFull, ReflexioMcpError
from reflexio_mcp.core.fields import IdentifierOrNew, Source
from reflexio_mcp.core.invalid_input import invalid_input_text
from reflexio_mcp.core.learnings import learned_text
from reflexio_mcp.core.limits import MAX_CONTENT_CHARS, MAX_INTERACTIONS_PER_PUBLISH
from reflexio_mcp.core.models import InteractionData, Published, PublishRequest, Strict
from reflexio_mcp.core.redacted_publish import fits_once_redacted
from reflexio_mcp.core.turn_secrets import Redaction, redact_turns
from reflexio_mcp.secrets import prepared
from reflexio_mcp.surface.access_scope import names_another_user, pinned_user, sees_every_user
from reflexio_mcp.surface.arguments import OptionalUserId, reported_to_model
from reflexio_mcp.surface.state import AppState, ToolContext, app_state

MAX_BATCH = 100
"""Publishes in one publish_batch call."""
PROGRESS_SECONDS = 2.0
"""How often a publish waiting for learning tells the client it still waits."""
REDACT_IN_THREAD_CHARS = 100_000
"""Larger publishes are scanned for secrets off the event loop."""

Turns = Annotated[
    list[InteractionData] | None,
    Field(
        min_length=1,
        max_length=MAX_INTERACTIONS_PER_PUBLISH,
        description="The turns, oldest first.",
    ),
]
UserMessage = Annotated[
    str,
    Field(
        max_length=MAX_CONTENT_CHARS,
        description="What the user said (with agent_response).",
    ),
]
AgentResponse = Annotated[
    str,
    Field(
        max_length=MAX_CONTENT_CHARS,
        description="What the agent answered.",
    ),
]
PublishSource = Annotated[Source, Field(description="Where the conversation came from.")]
AgentVersion = Annotated[str, Field(max_length=1000, description="The agent's version.")]
SessionId = Annotated[
    IdentifierOrNew,
    Field(description="Groups a conversation's publishes."),
]
RequestId = Annotated[
    IdentifierOrNew,
    Field(description="Idempotency key: sent again, nothing is stored twice."),
]
SkipAggregation = Annotated[
    bool, Field(description="Learn user profiles/playbooks, not agent playbooks.")
]
ForceExtraction = Annotated[bool, Field(description="Learn now, bypassing batching.")]
Redacted = Annotated[
    dict[str, int],
    Field(
        description="Secrets replaced by [REDACTED:<kind>] markers before storing, counted by "
        "kind (the values are never shown)."
    ),
]


class PublishItem(Strict):
    """One conversation of a publish_batch call."""

    interactions: Turns = None
    user_message: UserMessage = ""
    agent_response: AgentResponse = ""
    user_id: OptionalUserId = ""
    source: PublishSource = "mcp"
    agent_version: AgentVersion = ""
    session_id: SessionId = ""
    request_id: RequestId = ""
    skip_aggregation: SkipAggregation = False
    force_extraction: ForceExtraction = False


class PublishResult(BaseModel):
    """What publish_interaction stored, or queued."""

    status: Literal["stored", "already_stored", "queued"] = Field(
        description="stored: the backend holds the turns now; already_stored: an earlier "
        "publish with this request_id stored them; queued: kept on disk in the outbox and "
        "delivered to Reflexio in the background (get_publish_status tells when)."
    )
    stored: int = Field(description="How many interactions (turns) this call stored.")
    already_stored: bool = Field(
        description="True when an earlier publish with this request_id stored them: "
        "nothing was stored twice."
    )
    user_id: str
    session_id: str
    request_id: str = Field(description="Idempotency key of this publish; find its turns by it.")
    message: str = Field(description="The backend's own words, or why the publish is queued.")
    learning: str | None = Field(default=None, description="Whether profile/playbook learning ran.")
    redacted: Redacted = Field(default_factory=dict[str, int])
    warnings: list[str] = Field(default_factory=list[str])


class BatchItemResult(BaseModel):
    """How one conversation of a batch went."""

    index: int = Field(description="Position of the conversation in `publishes`, from 0.")
    ok: bool
    status: Literal["stored", "already_stored", "queued", "failed", "not_attempted"]
    user_id: str | None = None
    session_id: str | None = None
    request_id: str | None = Field(
        default=None, description="Publish it again with the same request_id to retry safely."
    )
    stored: int = 0
    redacted: Redacted = Field(default_factory=dict[str, int])
    message: str = Field(description="What happened, or what to fix.")


class BatchResult(BaseModel):
    """What publish_batch did with each conversation."""

    count: int
    succeeded: int
    failed: int
    results: list[BatchItemResult]


async def publish_interaction(
    ctx: ToolContext,
    interactions: Turns = None,
    user_message: UserMessage = "",
    agent_response: AgentResponse = "",
    user_id: OptionalUserId = "",
    source: PublishSource = "mcp",
    agent_version: AgentVersion = "",
    session_id: SessionId = "",
    request_id: RequestId = "",
    wait_for_response: Annotated[
        bool,
        Field(description="Wait until Reflexio has learned from it (can take minutes)."),
    ] = False,
    skip_aggregation: SkipAggregation = False,
    force_extraction: ForceExtraction = False,
) -> PublishResult:
    """Store a conversation (or one exchange) in Reflexio so it is remembered.

    Give `interactions` or `user_message` + `agent_response`; secrets are redacted first.
    `queued` means delivery is pending: see get_publish_status.
    """
    item = PublishItem.model_construct(
        interactions=interactions,
        user_message=user_message,
        agent_response=agent_response,
        user_id=user_id,
        source=source,
        agent_version=agent_version,
        session_id=session_id,
        request_id=request_id,
        skip_aggregation=skip_aggregation,
        force_extraction=force_extraction,
    )
    with reported_to_model():
        return await _publish(ctx, app_state(ctx), item, wait_for_response=wait_for_response)


async def publish_batch(
    ctx: ToolContext,
    publishes: Annotated[
        list[Annotated[Any, WithJsonSchema({"type": "object"})]],
        Field(
            min_length=1,
            max_length=MAX_BATCH,
            description="The conversations to store.",
        ),
    ],
) -> BatchResult:
    """Store several conversations in one call, each on its own (e.g. an import of logs).

    Each item takes publish_interaction's arguments but wait_for_response; a bad item fails
    alone.
    """
    state = app_state(ctx)
    results: list[BatchItemResult] = []
    stop_at = anyio.current_time() + state.deadline / 2
    for index, raw in enumerate(publishes):
        if anyio.current_time() > stop_at:
            results.append(_not_attempted(index, raw, len(publishes)))
            continue
        results.append(await _publish_item(ctx, state, index, raw))
    succeeded = sum(result.ok for result in results)
    return BatchResult(
        count=len(results), succeeded=succeeded, failed=len(results) - succeeded, results=results
    )


async def _publish_item(ctx: ToolContext, state: AppState, index: int, raw: Any) -> BatchItemResult:
    try:
        item = PublishItem.model_validate(raw)
        published = await _publish(ctx, state, item, wait_for_response=False)
    except ValidationError as err:
        return BatchItemResult(
            index=index, ok=False, status="failed", message=invalid_input_text(err)
        )
    except InvalidInput as err:
        return BatchItemResult(
            index=index, ok=False, status="failed", message=invalid_input_text(err)
        )
    except ReflexioMcpError as err:
        return BatchItemResult(index=index, ok=False, status="failed", message=str(err))
    return BatchItemResult(
        index=index,
        ok=True,
        status=published.status,
        user_id=published.user_id,
        session_id=published.session_id,
        request_id=published.request_id,
        stored=published.stored,
        redacted=published.redacted,
        message=published.message,
    )


def _not_attempted(index: int, raw: Any, count: int) -> BatchItemResult:
    request_id = cast(dict[str, Any], raw).get("request_id") if isinstance(raw, dict) else None
    return BatchItemResult(
        index=index,
        ok=False,
        status="not_attempted",
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        message=f"not attempted: the batch used half its deadline before reaching it; publish "
        f"items {index} to {count - 1} again in another call",
    )


async def _publish(
    ctx: ToolContext, state: AppState, item: PublishItem, *, wait_for_response: bool
) -> PublishResult:
    """Check, redact and publish one conversation.

    Raises:
        InvalidInput, ReflexioMcpError: as the backend's publish does.
    """
    pinned = pinned_user()
    if names_another_user(item.user_id, pinned):
        raise InvalidInput(
            [f"user_id: this caller publishes only as {pinned!r}; leave user_id out"]
        )
    turns = _turns(item.interactions, item.user_message, item.agent_response)
    redacted: dict[str, int] = {}
    if state.redact_secrets:
        redaction = await _redacted(turns)
        turns, redacted = redaction.turns, redaction.counts
    request = PublishRequest(
        request_id=item.request_id or new_request_id(),
        user_id=state.user(item.user_id),
        interaction_data_list=turns,
        source=item.source,
        agent_version=item.agent_version,
        session_id=item.session_id or state.session_id,
        skip_aggregation=item.skip_aggregation,
        force_extraction=item.force_extraction,
    )
    if redacted:
        fits_once_redacted(request, sum(redacted.values()))
    answer = await _published(ctx, state, request, wait_for_response=wait_for_response)
    learned = learned_text(answer.profiles_learned, answer.playbooks_learned)
    learning = " / ".join(s for s in (answer.learning_status, answer.learning_reason, learned) if s)
    status = "queued" if answer.queued else "already_stored" if answer.already_stored else "stored"
    return PublishResult(
        status=status,
        stored=len(turns) if status == "stored" else 0,
        already_stored=answer.already_stored,
        user_id=request.user_id,
        session_id=request.session_id,
        request_id=request.request_id,
        message=answer.message,
        learning=learning or None,
        redacted=redacted,
        warnings=answer.warnings,
    )


async def _redacted(turns: list[InteractionData]) -> Redaction:
    size = sum(len(turn.content) + len(turn.expert_content) for turn in turns)
    if size > REDACT_IN_THREAD_CHARS or not prepared():  # the rules may still be building
        return await anyio.to_thread.run_sync(redact_turns, turns)
    return redact_turns(turns)


async def _published(
    ctx: ToolContext, state: AppState, request: PublishRequest, *, wait_for_response: bool
) -> Published:
    try:
        return await _sent(ctx, state, request, wait_for_response=wait_for_response)
    except OutboxFull as err:
        if sees_every_user.get():
            raise
        raise OutboxFull(err.for_one_user) from None  # other users' counts are not its business


async def _sent(
    ctx: ToolContext, state: AppState, request: PublishRequest, *, wait_for_response: bool
) -> Published:
    if not wait_for_response:
        return await state.backend.publish(request, wait_for_response=False)
    outcome: Published | ReflexioMcpError = ReflexioMcpError("the publish did not run")
    async with anyio.create_task_group() as progress:
        progress.start_soon(_report_waiting, ctx)
        try:
            outcome = await state.backend.publish(request, wait_for_response=True)
        except ReflexioMcpError as err:  # raised below as itself, not in an ExceptionGroup
            outcome = err
        progress.cancel_scope.cancel()
    if isinstance(outcome, ReflexioMcpError):
        raise outcome
    return outcome


async def _report_waiting(ctx: ToolContext) -> None:
    """Progress notifications while a publish waits for learning: the elapsed seconds."""
    elapsed = 0.0
    message = "sent; waiting for Reflexio to learn from it"
    while True:
        await ctx.report_progress(elapsed, None, message)
        await anyio.sleep(PROGRESS_SECONDS)
        elapsed += PROGRESS_SECONDS
        message = f"still waiting for Reflexio to learn from it ({elapsed:g} s)"


def new_request_id() -> str:
    return str(uuid.uuid4())


def _turns(
    interactions: list[InteractionData] | None, user_message: str, agent_response: str
) -> list[InteractionData]:
    shortcut = {"user_message": user_message, "agent_response": agent_response}
    together = "give interactions (a list of turns) or user_message and agent_response together"
    if interactions and any(shortcut.values()):
        raise InvalidInput(
            ["interactions: give either interactions or user_message + agent_response, not both"]
        )
    if interactions:
        return interactions
    if not any(shortcut.values()):
        raise InvalidInput([f"interactions: required; {together}"])
    problems = [
        f"{name}: required; {together}" if not text else f"{name}: empty; say what was said"
        for name, text in shortcut.items()
        if not text.strip()
    ]
    if problems:
        raise InvalidInput(problems)
    return [
        InteractionData(role="user", content=user_message),
        InteractionData(role="assistant", content=agent_response),
    ]
