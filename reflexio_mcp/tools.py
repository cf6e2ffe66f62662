"""The MCP tools: check, make one backend call, shape the result. No HTTP, no SQL here.

Each tool reaches the Backend through its request context (`ctx`), which the server's
lifespan fills once. Arguments are typed with the annotated types of `models`, so the schema
a client sees and the check a call meets are declared once.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from typing import Annotated, Literal

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from reflexio_mcp.errors import InvalidInput, ReflexioError
from reflexio_mcp.invalid_input import invalid_input
from reflexio_mcp.models import (
    MAX_CONTENT_CHARS,
    MAX_INTERACTIONS_PER_PUBLISH,
    MAX_QUERY_CHARS,
    SOURCE_RULE,
    GetRequest,
    Identifier,
    IdentifierOrNew,
    Interaction,
    InteractionData,
    InteractionId,
    PublishRequest,
    PublishStatus,
    ResultCount,
    SearchMode,
    SearchRequest,
    Source,
    Timestamp,
    UserIdOrDefault,
)
from reflexio_mcp.search_text import bounded_query, has_words
from reflexio_mcp.state import ToolContext, app_state


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
    warnings: list[str] = Field(default_factory=list[str])


class InteractionList(BaseModel):
    """Interactions, in the order the backend ranked them."""

    user_id: str | None = Field(
        description="The user whose interactions these are; null for every user "
        "(get_all_interactions)."
    )
    count: int
    interactions: list[Interaction]
    note: str | None = Field(default=None, description="Anything the caller should know.")


class DeleteResult(BaseModel):
    """The interaction that delete_interaction removed."""

    deleted: Interaction
    message: str


OptionalUserId = Annotated[
    UserIdOrDefault,
    Field(description='Whose interactions; omit (or "") for the server\'s default user.'),
]
StartTime = Annotated[
    Timestamp | None,
    Field(description="Only interactions at or after this ISO 8601 time (no offset = UTC)."),
]
EndTime = Annotated[
    Timestamp | None,
    Field(description="Only interactions at or before this ISO 8601 time (no offset = UTC)."),
]


@contextmanager
def reported_to_model() -> Generator[None]:
    """Turn anticipated failures into ToolError, whose text the model sees and can act on."""
    try:
        yield
    except ValidationError as err:
        raise ToolError(f"invalid input: {invalid_input(err)}") from err
    except InvalidInput as err:
        raise ToolError(f"invalid input: {err}") from err
    except ReflexioError as err:
        raise ToolError(str(err)) from err


async def publish_interaction(
    ctx: ToolContext,
    interactions: Annotated[
        list[InteractionData] | None,
        Field(
            min_length=1,
            max_length=MAX_INTERACTIONS_PER_PUBLISH,
            description="The turns to store, oldest first (1-1000). Or use user_message "
            "and agent_response for a single exchange.",
        ),
    ] = None,
    user_message: Annotated[
        str,
        Field(
            max_length=MAX_CONTENT_CHARS,
            description="Shortcut for one exchange: what the user said (with agent_response).",
        ),
    ] = "",
    agent_response: Annotated[
        str,
        Field(
            max_length=MAX_CONTENT_CHARS,
            description="Shortcut for one exchange: the agent's answer (with user_message).",
        ),
    ] = "",
    user_id: OptionalUserId = "",
    source: Annotated[
        Source, Field(description=f"Where the conversation came from: {SOURCE_RULE}.")
    ] = "mcp",
    agent_version: Annotated[
        str, Field(max_length=1000, description="Version of the agent that answered.")
    ] = "",
    session_id: Annotated[
        IdentifierOrNew,
        Field(
            description="Groups publishes of one conversation; omit to use this server "
            "process's own session."
        ),
    ] = "",
    request_id: Annotated[
        IdentifierOrNew,
        Field(
            description="Your idempotency key for this publish: send the same one again (e.g. "
            "after a lost answer) and nothing is stored twice. Omit for a fresh one."
        ),
    ] = "",
    wait_for_response: Annotated[
        bool,
        Field(description="Wait until Reflexio has learned from it (can take minutes)."),
    ] = False,
    skip_aggregation: Annotated[
        bool, Field(description="Learn user profiles/playbooks but skip agent playbooks.")
    ] = False,
    force_extraction: Annotated[
        bool, Field(description="Run learning now, bypassing Reflexio's batching gates.")
    ] = False,
) -> PublishResult:
    """Store a conversation (or one exchange) in Reflexio so it is remembered.

    Use it after an exchange worth remembering: Reflexio keeps the turns, makes them
    searchable, and learns user profiles and playbooks from them. Give either
    `interactions` (any number of turns, with roles, expert corrections, tools used) or
    `user_message` + `agent_response`. Returns how many turns were stored and the
    request_id of the publish; publishing the same request_id again stores nothing twice.
    """
    state = app_state(ctx)
    with reported_to_model():
        turns = _turns(interactions, user_message, agent_response)
        request = PublishRequest(
            request_id=request_id or new_request_id(),
            user_id=state.user(user_id),
            interaction_data_list=turns,
            source=source,
            agent_version=agent_version,
            session_id=session_id or state.session_id,
            skip_aggregation=skip_aggregation,
            force_extraction=force_extraction,
        )
        answer = await state.backend.publish(request, wait_for_response=wait_for_response)
    learning = " / ".join(s for s in (answer.learning_status, answer.learning_reason) if s)
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
        warnings=answer.warnings,
    )


async def get_publish_status(
    ctx: ToolContext,
    request_id: Annotated[
        Identifier, Field(description="The request_id publish_interaction returned.")
    ],
    user_id: OptionalUserId = "",
) -> PublishStatus:
    """Tell whether a publish reached Reflexio: queued, delivered or failed.

    Use it after publish_interaction answered `queued` (Reflexio was down, restarting or
    rate limiting), to learn whether the turns are stored now. Returns the status, the
    attempts made, the last error and, for a queued publish, how many wait before it.
    """
    state = app_state(ctx)
    with reported_to_model():
        return await state.backend.publish_status(state.user(user_id), request_id)


async def search_interactions(
    ctx: ToolContext,
    query: Annotated[
        str,
        Field(
            max_length=MAX_QUERY_CHARS,
            description="Words to look for in what was said (any of them; Chinese, Japanese "
            "and Korean text is also found inside longer runs). Omit to list the newest.",
        ),
    ] = "",
    user_id: OptionalUserId = "",
    top_k: Annotated[
        ResultCount | None, Field(description="At most this many results (1-1000).")
    ] = None,
    most_recent_k: Annotated[
        ResultCount | None,
        Field(
            description="Keep only the newest k matches (1-1000); without a query, "
            "returns the newest k interactions."
        ),
    ] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    search_mode: Annotated[
        SearchMode,
        Field(description="'fts' full-text, 'vector' semantic, 'hybrid' both (default)."),
    ] = "hybrid",
    threshold: Annotated[
        float | None,
        Field(ge=0, le=1, description="Minimum similarity for vector matches (0-1)."),
    ] = None,
    request_id: Annotated[
        IdentifierOrNew, Field(description="Only turns stored by this publish.")
    ] = "",
) -> InteractionList:
    """Find past interactions of a user by what was said in them.

    Use it to recall earlier conversations ("what did we decide about X?"). Returns the
    matching turns, best match first, with their ids, roles, content and times. With no
    query, lists the newest turns (most_recent_k or top_k of them, 10 by default).
    """
    state = app_state(ctx)
    sent_query, note = bounded_query(query)
    with reported_to_model():
        request = SearchRequest(
            user_id=state.user(user_id),
            query=sent_query,
            top_k=top_k,
            most_recent_k=most_recent_k,
            start_time=start_time,
            end_time=end_time,
            search_mode=search_mode,
            threshold=threshold,
            request_id=request_id or None,
        )
        if sent_query is not None and not has_words(sent_query):
            return InteractionList(
                user_id=request.user_id,
                count=0,
                interactions=[],
                note="the query has no words to search for (only punctuation, symbols or "
                "emoji), so nothing matches; search with words",
            )
        found = await state.backend.search_interactions(request)
    return InteractionList(user_id=request.user_id, count=len(found), interactions=found, note=note)


async def get_interactions(
    ctx: ToolContext,
    user_id: OptionalUserId = "",
    top_k: Annotated[ResultCount, Field(description="How many of the newest (1-1000).")] = 30,
    start_time: StartTime = None,
    end_time: EndTime = None,
) -> InteractionList:
    """List a user's most recent interactions, newest first.

    Use it to see what was said lately, or to find the interaction_id to delete. Returns
    the turns with their ids, roles, content and times.
    """
    state = app_state(ctx)
    with reported_to_model():
        request = GetRequest(
            user_id=state.user(user_id),
            top_k=top_k,
            start_time=start_time,
            end_time=end_time,
        )
        found = await state.backend.get_interactions(request)
    return InteractionList(user_id=request.user_id, count=len(found), interactions=found)


async def get_all_interactions(
    ctx: ToolContext,
    top_k: Annotated[ResultCount, Field(description="How many of the newest (1-1000).")] = 100,
) -> InteractionList:
    """List the most recent interactions of EVERY user, newest first (admin only).

    Use it to audit what the store holds across users. Returns the turns with their
    user ids, interaction ids, roles, content and times.
    """
    with reported_to_model():
        found = await app_state(ctx).backend.get_all_interactions(top_k)
    return InteractionList(user_id=None, count=len(found), interactions=found)


async def delete_interaction(
    ctx: ToolContext,
    interaction_id: Annotated[
        InteractionId, Field(description="Id of the interaction, from get/search_interactions.")
    ],
    user_id: OptionalUserId = "",
) -> DeleteResult:
    """Delete one stored interaction (one turn) of a user, permanently.

    Use it when the user asks to forget something. It checks that the interaction exists
    and belongs to the user first; an unknown id is an error and deletes nothing. Returns
    the interaction that was deleted.
    """
    state = app_state(ctx)
    owner = state.user(user_id)
    with reported_to_model():
        deleted = await state.backend.delete_interaction(owner, interaction_id)
    return DeleteResult(
        deleted=deleted,
        message=f"deleted interaction {interaction_id} of user {deleted.user_id!r}",
    )


def build_tools(
    *, open_world: bool, allow_admin: bool, read_only: bool = False, pinned: bool = False
) -> list[Tool]:
    """The tools to register: get_all_interactions only when `allow_admin`, none that writes
    when `read_only`, and no `user_id` argument when every caller is `pinned` to one user.

    `open_world` says whether calls leave this process for another service (Reflexio).
    """

    def hints(*, read_only: bool, destructive: bool = False, idempotent: bool) -> ToolAnnotations:
        return ToolAnnotations(
            read_only_hint=read_only,
            destructive_hint=destructive,
            idempotent_hint=idempotent,
            open_world_hint=open_world,
        )

    def tool(
        fn: Callable[..., Awaitable[BaseModel]], title: str, annotations: ToolAnnotations
    ) -> Tool:
        description = inspect.cleandoc(fn.__doc__ or "")
        made = Tool.from_function(fn, title=title, description=description, annotations=annotations)
        return _without_user_id(made) if pinned else made

    reading = [
        tool(get_publish_status, "Get publish status", hints(read_only=True, idempotent=True)),
        tool(search_interactions, "Search interactions", hints(read_only=True, idempotent=True)),
        tool(get_interactions, "Get interactions", hints(read_only=True, idempotent=True)),
    ]
    writing = [
        tool(publish_interaction, "Publish interaction", hints(read_only=False, idempotent=False)),
        tool(
            delete_interaction,
            "Delete interaction",
            hints(read_only=False, destructive=True, idempotent=True),
        ),
    ]
    admin = [
        tool(
            get_all_interactions,
            "Get all interactions (admin)",
            hints(read_only=True, idempotent=True),
        )
    ]
    tools = [*writing[:1], *reading, *admin, *writing[1:]]
    return [
        t for t in tools if (allow_admin or t not in admin) and (not read_only or t not in writing)
    ]


def _without_user_id(tool: Tool) -> Tool:
    """The tool as a pinned caller sees it: the user is the caller's, not an argument."""
    properties = dict(tool.parameters.get("properties", {}))
    if "user_id" not in properties:
        return tool
    del properties["user_id"]
    parameters = {**tool.parameters, "properties": properties}
    return tool.model_copy(update={"parameters": parameters})


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
