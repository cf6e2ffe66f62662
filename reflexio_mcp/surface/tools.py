"""The MCP tools: check, make one backend call, shape the result. No HTTP, no SQL here.

Each tool reaches the Backend through its request context (`ctx`), which the server's
lifespan fills once. Arguments are typed with the annotated types of `models`, so the schema
a client sees and the check a call meets are declared once. Listings are paged to fit the
result size budget (result_pages); publishing and deleting live in their own modules.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.fields import Identifier, IdentifierOrNew, ResultCount, SearchMode
from reflexio_mcp.core.limits import MAX_QUERY_CHARS
from reflexio_mcp.core.models import GetRequest, Interaction, Keyset, PublishStatus, SearchRequest
from reflexio_mcp.core.search_text import bounded_query, has_words
from reflexio_mcp.surface.access_scope import acting_user_id
from reflexio_mcp.surface.answer_text import answered
from reflexio_mcp.surface.arguments import (
    Cursor,
    EndTime,
    OptionalUserId,
    StartTime,
    reported_to_model,
)
from reflexio_mcp.surface.deletion import delete_interaction
from reflexio_mcp.surface.learnings import delete_learning, search_learnings, with_learning
from reflexio_mcp.surface.listed_schemas import listed_arguments, listed_result
from reflexio_mcp.surface.listing import ContextTurn, InteractionList, SearchAnswer
from reflexio_mcp.surface.paging import (
    Page,
    Position,
    Unshown,
    after,
    cursor_chars,
    cursor_problem,
    fit_page,
    in_order,
    make_cursor,
    read_cursor,
    with_context,
)
from reflexio_mcp.surface.publishing import publish_batch, publish_interaction
from reflexio_mcp.surface.state import AppState, ToolContext, app_state


class AllRequest(BaseModel):
    """get_all_interactions' one argument, as its cursors carry it."""

    top_k: ResultCount = 100


MAX_CONTEXT_TURNS = 3
ContextTurns = Annotated[int, Field(ge=0, le=MAX_CONTEXT_TURNS)]


class SearchCall(SearchRequest):
    """search_interactions' arguments, as its cursors carry them: the backend's search and
    how many turns around each hit to show."""

    context: ContextTurns = 0

    def search(self) -> SearchRequest:
        """The search the backend runs (it takes no `context`)."""
        return SearchRequest.model_construct(
            **{name: getattr(self, name) for name in SearchRequest.model_fields}
        )


_Listing = TypeVar("_Listing", GetRequest, SearchCall, AllRequest)


async def get_publish_status(
    ctx: ToolContext,
    request_id: Annotated[Identifier, Field(description="The request_id a publish returned.")],
    user_id: OptionalUserId = "",
) -> PublishStatus:
    """Tell whether a publish reached Reflexio: queued, delivered or failed.

    Use it after a publish answered `queued`.
    """
    state = app_state(ctx)
    with reported_to_model():
        status = await state.backend.publish_status(state.user(user_id), request_id)
    return await with_learning(state, status)


async def search_interactions(
    ctx: ToolContext,
    query: Annotated[
        str,
        Field(
            max_length=MAX_QUERY_CHARS,
            description="Words to find (any of them); omit to list the newest.",
        ),
    ] = "",
    user_id: OptionalUserId = "",
    top_k: Annotated[ResultCount | None, Field(description="Max results.")] = None,
    most_recent_k: Annotated[
        ResultCount | None,
        Field(description="Keep only the newest k matches."),
    ] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    search_mode: Annotated[
        SearchMode,
        Field(description="fts: full-text, vector: semantic, hybrid: both."),
    ] = "hybrid",
    threshold: Annotated[
        float | None,
        Field(ge=0, le=1, description="Min vector similarity."),
    ] = None,
    request_id: Annotated[IdentifierOrNew, Field(description="Only this publish's turns.")] = "",
    context: Annotated[
        ContextTurns, Field(description="Turns to show either side of each hit.")
    ] = 0,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, SearchAnswer]:
    """Find past interactions of a user by what was said in them.

    Use it to recall earlier conversations. Best match first; with no query, the newest (10
    by default).
    """
    state = app_state(ctx)
    note: str | None = None
    position: Position | None = None
    with reported_to_model():
        if cursor:
            request, position = _continued(cursor, "search_interactions", SearchCall, user_id)
        else:
            sent_query, note = bounded_query(query)
            request = SearchCall(
                user_id=state.user(user_id),
                query=sent_query,
                top_k=top_k,
                most_recent_k=most_recent_k,
                start_time=start_time,
                end_time=end_time,
                search_mode=search_mode,
                threshold=threshold,
                request_id=request_id or None,
                context=context,
            )
        if request.query is not None and not has_words(request.query):
            return answered(
                SearchAnswer(
                    user_id=request.user_id,
                    count=0,
                    interactions=[],
                    note="the query has no words to search for (only punctuation, symbols or "
                    "emoji), so nothing matches; search with words",
                )
            )
        among = position.ids if isinstance(position, Unshown) else None
        found = await state.backend.search_interactions(request.search(), among)
        candidates = _candidates(found.interactions, position)
        page = _page(state, "search_interactions", request, candidates)
        shown: list[ContextTurn] = []
        notes = [*([note] if note else []), *found.notes]
        if request.context and page.interactions:
            around = await state.backend.session_neighbours(
                request.user_id, page.interactions, request.context
            )
            page, shown, left_out = with_context(
                page,
                candidates,
                around,
                state.max_result_chars,
                reserved=lambda: cursor_chars("search_interactions", request, candidates),
            )
            if left_out:
                notes.append(
                    "the turns around the hit were left out to fit the result size budget "
                    "(REFLEXIO_MCP_MAX_RESULT_CHARS)"
                )
    listing = _listing("search_interactions", request, candidates, page, position, notes)
    answer = SearchAnswer(**dict(listing), search_mode_effective=found.search_mode, context=shown)
    return answered(answer, mode_asked=request.search_mode)


async def get_interactions(
    ctx: ToolContext,
    user_id: OptionalUserId = "",
    top_k: Annotated[ResultCount, Field(description="How many of the newest.")] = 30,
    start_time: StartTime = None,
    end_time: EndTime = None,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, InteractionList]:
    """List a user's most recent interactions, newest first.

    Use it to see what was said lately, or to find an interaction_id.
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
    page = _page(state, "get_interactions", request, found)
    return answered(_listing("get_interactions", request, found, page, position))


async def get_all_interactions(
    ctx: ToolContext,
    top_k: Annotated[ResultCount, Field(description="How many of the newest.")] = 100,
    cursor: Cursor = "",
) -> Annotated[CallToolResult, InteractionList]:
    """List the most recent interactions of EVERY user, newest first (admin only).

    Use it to audit the store.
    """
    state = app_state(ctx)
    position: Position | None = None
    with reported_to_model():
        if cursor:
            request, position = _continued(cursor, "get_all_interactions", AllRequest, "")
        else:
            request = AllRequest(top_k=top_k)
        found = await state.backend.get_all_interactions(request.top_k, _keyset(position))
    page = _page(state, "get_all_interactions", request, found)
    listing = _listing("get_all_interactions", request, found, page, position, user_id=None)
    return answered(listing)


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


def _candidates(found: list[Interaction], position: Position | None) -> list[Interaction]:
    """What is left of the listing after `position`, from what the backend answered for it."""
    return in_order(found, position) if isinstance(position, Unshown) else found


def _page(state: AppState, tool: str, request: BaseModel, candidates: list[Interaction]) -> Page:
    """The first of `candidates` that fit the budget, the cursor to the rest reserved."""
    return fit_page(
        candidates,
        state.max_result_chars,
        reserved=lambda: cursor_chars(tool, request, candidates),
    )


def _listing(
    tool: str,
    request: GetRequest | SearchCall | AllRequest,
    candidates: list[Interaction],
    page: Page,
    position: Position | None,
    notes: list[str] | None = None,
    *,
    user_id: str | None = "",
) -> InteractionList:
    """The answer showing `page`, the first of `candidates` (what is left of the listing
    after `position`), with the cursor to the rest."""
    told = [*(notes or []), *([page_note] if (page_note := page.note()) else [])]
    next_cursor = None
    if page.more:
        next_cursor = make_cursor(tool, request, after(tool, page, candidates, position))
    return InteractionList(
        user_id=getattr(request, "user_id", None) if user_id is not None else None,
        count=len(page.interactions),
        interactions=page.interactions,
        truncated=page.more > 0,
        next_cursor=next_cursor,
        note="; ".join(told) or None,
    )


def build_tools(
    *,
    open_world: bool,
    allow_admin: bool,
    read_only: bool = False,
    pinned: bool = False,
    learns: bool = False,
) -> list[Tool]:
    """The tools to register: get_all_interactions only when `allow_admin`, none that writes
    when `read_only`, no `user_id` argument when every caller is `pinned` to one user, and the
    learnings tools only when the backend `learns`.

    `open_world` says whether calls leave this process for another service (Reflexio).
    """

    # A hint the spec gives a default for is left out when it is that default (readOnlyHint
    # false, destructiveHint true, idempotentHint false, openWorldHint true): every session
    # pays for each one in context. destructiveHint and idempotentHint mean something only
    # for a tool that writes, so a reading tool has neither.
    world = None if open_world else False

    def reads() -> ToolAnnotations:
        return ToolAnnotations(read_only_hint=True, open_world_hint=world)

    def writes(*, destructive: bool, idempotent: bool = False) -> ToolAnnotations:
        return ToolAnnotations(
            destructive_hint=None if destructive else False,
            idempotent_hint=True if idempotent else None,
            open_world_hint=world,
        )

    def tool(
        fn: Callable[..., Awaitable[BaseModel]], title: str, annotations: ToolAnnotations
    ) -> Tool:
        description = inspect.cleandoc(fn.__doc__ or "")
        hints = annotations if annotations.model_dump(exclude_none=True) else None
        made = Tool.from_function(fn, title=title, description=description, annotations=hints)
        return _without_user_id(made) if pinned else made

    reading = [
        tool(get_publish_status, "Get publish status", reads()),
        tool(search_interactions, "Search interactions", reads()),
        tool(get_interactions, "Get interactions", reads()),
    ]
    writing = [
        tool(publish_interaction, "Publish interaction", writes(destructive=False)),
        tool(publish_batch, "Publish a batch", writes(destructive=False)),
        tool(delete_interaction, "Delete interaction", writes(destructive=True, idempotent=True)),
    ]
    admin = [tool(get_all_interactions, "Get all interactions (admin)", reads())]
    if learns:
        reading.append(tool(search_learnings, "Search learnings", reads()))
        writing.append(tool(delete_learning, "Delete learning", writes(destructive=True)))
    tools = [*writing[:2], *reading, *admin, *writing[2:]]
    return [
        _listed(t)
        for t in tools
        if (allow_admin or t not in admin) and (not read_only or t not in writing)
    ]


def _listed(tool: Tool) -> Tool:
    """The tool with its schemas as tools/list shows them (listed_schemas)."""
    output = tool.fn_metadata.output_schema
    metadata = tool.fn_metadata.model_copy(
        update={"output_schema": listed_result(output) if output is not None else None}
    )
    return tool.model_copy(
        update={"parameters": listed_arguments(tool.parameters), "fn_metadata": metadata}
    )


def _without_user_id(tool: Tool) -> Tool:
    """The tool as a pinned caller sees it: the user is the caller's, not an argument."""
    properties = dict(tool.parameters.get("properties", {}))
    if "user_id" not in properties:
        return tool
    del properties["user_id"]
    parameters = {**tool.parameters, "properties": properties}
    return tool.model_copy(update={"parameters": parameters})
