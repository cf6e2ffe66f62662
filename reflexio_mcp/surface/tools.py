"""The MCP tools: check, make one backend call, shape the result. No HTTP, no SQL here.

Each tool reaches the Backend through its request context (`ctx`), which the server's
lifespan fills once. Arguments are typed with the annotated types of `models`, so the schema
a client sees and the check a call meets are declared once. Listings are paged to fit the
result size budget (result_pages); publishing and deleting live in their own modules.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.fields import Identifier, IdentifierOrNew, ResultCount, SearchMode
from reflexio_mcp.core.limits import MAX_QUERY_CHARS
from reflexio_mcp.core.models import GetRequest, Interaction, Keyset, PublishStatus, SearchRequest
from reflexio_mcp.core.search_text import bounded_query, has_words
from reflexio_mcp.surface.access_scope import acting_user_id
from reflexio_mcp.surface.arguments import (
    Cursor,
    EndTime,
    OptionalUserId,
    StartTime,
    reported_to_model,
)
from reflexio_mcp.surface.deletion import delete_interaction
from reflexio_mcp.surface.paging import (
    Position,
    Unshown,
    after,
    cursor_chars,
    cursor_problem,
    fit_page,
    in_order,
    make_cursor,
    read_cursor,
)
from reflexio_mcp.surface.publishing import item_schema, publish_batch, publish_interaction
from reflexio_mcp.surface.state import AppState, ToolContext, app_state


class AllRequest(BaseModel):
    """get_all_interactions' one argument, as its cursors carry it."""

    top_k: ResultCount = 100


_Listing = TypeVar("_Listing", GetRequest, SearchRequest, AllRequest)


TURNS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "The turns, each with interaction_id, user_id, request_id, "
    "created_at (Unix seconds), time (ISO 8601 UTC), role, content, expert_content, "
    "user_action, user_action_description, interacted_image_url and tools_used "
    "(tool_name, tool_data, status).",
    "items": {
        "type": "object",
        "required": ["interaction_id", "role", "content"],
        "properties": {
            "interaction_id": {"type": "integer"},
            "role": {"type": "string"},
            "content": {"type": "string"},
        },
    },
}
"""What clients validate every listing against: the identifying fields of each turn, the rest
described. Clients validate structured results with jsonschema, and the full turn schema (nested
$refs, 14 properties) cost every SDK client about 0.1 ms a turn: most of a search's latency."""


class InteractionList(BaseModel):
    """Interactions, in the order the backend ranked them."""

    user_id: str | None = Field(
        description="The user whose interactions these are; null for every user "
        "(get_all_interactions)."
    )
    count: int = Field(description="Interactions in this answer.")
    interactions: Annotated[list[Interaction], WithJsonSchema(TURNS_SCHEMA)]
    truncated: bool = Field(
        default=False,
        description="More results than fit in one answer: call again with next_cursor.",
    )
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the rest of this listing."
    )
    note: str | None = Field(default=None, description="Anything the caller should know.")


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
    cursor: Cursor = "",
) -> InteractionList:
    """Find past interactions of a user by what was said in them.

    Use it to recall earlier conversations ("what did we decide about X?"). Returns the
    matching turns, best match first, with their ids, roles, content and times. With no
    query, lists the newest turns (most_recent_k or top_k of them, 10 by default). A result
    too large for one answer says `truncated` and gives `next_cursor` for the rest.
    """
    state = app_state(ctx)
    note: str | None = None
    position: Position | None = None
    with reported_to_model():
        if cursor:
            request, position = _continued(cursor, "search_interactions", SearchRequest, user_id)
        else:
            sent_query, note = bounded_query(query)
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
        if request.query is not None and not has_words(request.query):
            return InteractionList(
                user_id=request.user_id,
                count=0,
                interactions=[],
                note="the query has no words to search for (only punctuation, symbols or "
                "emoji), so nothing matches; search with words",
            )
        among = position.ids if isinstance(position, Unshown) else None
        found = await state.backend.search_interactions(request, among)
    return _paged(state, "search_interactions", request, found, position, note)


async def get_interactions(
    ctx: ToolContext,
    user_id: OptionalUserId = "",
    top_k: Annotated[ResultCount, Field(description="How many of the newest (1-1000).")] = 30,
    start_time: StartTime = None,
    end_time: EndTime = None,
    cursor: Cursor = "",
) -> InteractionList:
    """List a user's most recent interactions, newest first.

    Use it to see what was said lately, or to find the interaction_id to delete. Returns
    the turns with their ids, roles, content and times. A result too large for one answer
    says `truncated` and gives `next_cursor` for the rest.
    """
    state = app_state(ctx)
    position: Position | None = None
    with reported_to_model():
        if cursor:
            request, position = _continued(cursor, "get_interactions", GetRequest, user_id)
        else:
            request = GetRequest(
                user_id=state.user(user_id), top_k=top_k, start_time=start_time, end_time=end_time
            )
        found = await state.backend.get_interactions(request, _keyset(position))
    return _paged(state, "get_interactions", request, found, position)


async def get_all_interactions(
    ctx: ToolContext,
    top_k: Annotated[ResultCount, Field(description="How many of the newest (1-1000).")] = 100,
    cursor: Cursor = "",
) -> InteractionList:
    """List the most recent interactions of EVERY user, newest first (admin only).

    Use it to audit what the store holds across users. Returns the turns with their
    user ids, interaction ids, roles, content and times. A result too large for one answer
    says `truncated` and gives `next_cursor` for the rest.
    """
    state = app_state(ctx)
    position: Position | None = None
    with reported_to_model():
        if cursor:
            request, position = _continued(cursor, "get_all_interactions", AllRequest, "")
        else:
            request = AllRequest(top_k=top_k)
        found = await state.backend.get_all_interactions(request.top_k, _keyset(position))
    return _paged(state, "get_all_interactions", request, found, position, user_id=None)


def _continued(
    cursor: str, tool: str, model: type[_Listing], user_id: str
) -> tuple[_Listing, Position]:
    """The request a cursor continues, for the same user a `user_id` argument could name.

    Raises:
        InvalidInput: the cursor is not one of `tool`'s, or lists another user's turns than
            this caller may read or than `user_id` names.
    """
    fields, position = read_cursor(cursor, tool)
    try:
        request = model.model_validate(fields)
    except ValidationError:
        raise InvalidInput([cursor_problem(tool)]) from None
    listed = getattr(request, "user_id", None)
    expected = acting_user_id("", user_id)
    if listed is not None and expected and expected != listed:
        raise InvalidInput(
            [
                f"cursor: it continues user {listed!r}'s listing, not this caller's or "
                "user_id's; call again without cursor"
            ]
        )
    return request, position


def _keyset(position: Position | None) -> Keyset | None:
    return position if isinstance(position, Keyset) else None


def _paged(
    state: AppState,
    tool: str,
    request: GetRequest | SearchRequest | AllRequest,
    found: list[Interaction],
    position: Position | None,
    note: str | None = None,
    *,
    user_id: str | None = "",
) -> InteractionList:
    """The page of what is left of the listing after `position` (from the start without one)
    that fits the budget, with the cursor to the rest. `found` is what the backend answered
    for that position: everything left."""
    candidates = in_order(found, position) if isinstance(position, Unshown) else found
    reserved = cursor_chars(tool, request, candidates)
    page = fit_page(candidates, state.max_result_chars, reserved=reserved)
    notes = [text for text in (note, page.note()) if text]
    next_cursor = None
    if page.more:
        next_cursor = make_cursor(tool, request, after(tool, page, candidates, position))
    return InteractionList(
        user_id=getattr(request, "user_id", None) if user_id is not None else None,
        count=len(page.interactions),
        interactions=page.interactions,
        truncated=page.more > 0,
        next_cursor=next_cursor,
        note="; ".join(notes) or None,
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
        _with_item_schema(
            tool(publish_batch, "Publish a batch", hints(read_only=False, idempotent=False)),
            pinned=pinned,
        ),
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
    tools = [*writing[:2], *reading, *admin, *writing[2:]]
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


def _with_item_schema(tool: Tool, *, pinned: bool) -> Tool:
    """publish_batch as clients see it: each item described as publish_interaction's
    arguments (it takes plain objects, checked one by one, so a bad item fails alone)."""
    schema = item_schema()
    definitions = schema.pop("$defs", {})
    if pinned:
        schema["properties"].pop("user_id", None)
    parameters = dict(tool.parameters)
    properties = dict(parameters["properties"])
    properties["publishes"] = {**properties["publishes"], "items": schema}
    parameters.update(properties=properties, **({"$defs": definitions} if definitions else {}))
    return tool.model_copy(update={"parameters": parameters})
