"""MCP resources: the backend's status, a user's newest interactions, and one session's, as
bounded JSON documents; `resources/list` pages through the caller's sessions.

Every document fits `max_chars` characters (REFLEXIO_MCP_MAX_RESULT_CHARS): long text is cut
at MAX_FIELD_CHARS, and when the turns still do not fit, the oldest are left out and the
document says `"truncated": true` and, under `more`, the tool call that returns the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
)
from pydantic import TypeAdapter, ValidationError

from reflexio_mcp.core import defaults
from reflexio_mcp.core.backend import Backend
from reflexio_mcp.core.errors import ReflexioMcpError
from reflexio_mcp.core.fields import Identifier, UserId
from reflexio_mcp.core.invalid_input import invalid_input_text
from reflexio_mcp.core.models import GetRequest, Interaction, iso_time
from reflexio_mcp.core.status import SessionSummary
from reflexio_mcp.surface import budget
from reflexio_mcp.surface.access_scope import (
    acting_user_id,
    check_own_user,
    pinned_user,
    sees_every_user,
)
from reflexio_mcp.surface.cursor import NotOurCursor, decode, encode
from reflexio_mcp.surface.resource_updates import ResourceUpdates, session_uri

logger = logging.getLogger(__name__)

RECENT_COUNT = 20
SESSION_TURNS = 100
"""A session document shows at most its newest 100 turns (oldest first)."""
MAX_FIELD_CHARS = 2000
"""Longer text is cut in resources (never in storage): a resource is read whole into context."""
CUT_HINT = "; get_interactions returns the full text"
"""What a cut text in a resource adds: where to read it whole."""
PAGE_SIZE = 50
"""Resources per resources/list page."""
MAX_OFFSET = 10_000_000
USER_ID = TypeAdapter[str](UserId)
SESSION_ID = TypeAdapter[str](Identifier)
USER_ID_RULES = ResourceSecurity(exempt_params={"user_id"})
"""The SDK's path checks would refuse `a:b` as a Windows drive path; the user id rule (shared
with the tools, and refusing / and \\ and . and ..) applies instead."""
SESSION_RULES = ResourceSecurity(exempt_params={"user_id", "session_id"})
"""Likewise; a session id may hold any printable text, / included (percent-encoded)."""
SESSION_TEMPLATE = "reflexio://users/{user_id}/sessions/{session_id}"
USER_TEMPLATE = "reflexio://users/{user_id}/interactions"

Render = Callable[[list[dict[str, Any]], bool], str]
"""The document for the turns shown (newest first) and whether any was left out or cut."""


def register_resources(
    server: MCPServer[Any],
    backend: Backend,
    *,
    default_user_id: str,
    updates: ResourceUpdates,
    max_chars: int = defaults.MAX_RESULT_CHARS,
) -> None:
    """Add reflexio://status, reflexio://interactions/recent and the templates
    reflexio://users/{user_id}/interactions and reflexio://users/{user_id}/sessions/{session_id};
    page resources/list through the caller's sessions; and keep subscribers of either protocol
    era told of changes (`updates`, whose bus the server was built with)."""

    @server.resource(
        "reflexio://status",
        name="status",
        title="Backend status",
        description="Which store serves the calls (embedded file or Reflexio URL), whether it "
        "answers, whether it learns, and how many interactions it holds: for a caller acting "
        "for one user (an access token's, --pin-user's), that user's counts only.",
        mime_type="application/json",
    )
    async def status() -> str:
        user_id = acting_user_id(default_user_id)
        status = await backend.status(user_id, store_wide=sees_every_user.get())
        return status.model_copy(update={"user_id": user_id}).model_dump_json(indent=1)

    @server.resource(
        "reflexio://interactions/recent",
        name="recent_interactions",
        title="Recent interactions",
        description=f"The {RECENT_COUNT} most recent interactions of the default user "
        f"({default_user_id}; with an access token, the token's user), newest first, as JSON; "
        f"long text is cut to {MAX_FIELD_CHARS} characters, the whole to {max_chars}.",
        mime_type="application/json",
    )
    async def recent_interactions() -> str:
        return await recent_json(backend, acting_user_id(default_user_id), max_chars)

    @server.resource(
        USER_TEMPLATE,
        name="user_interactions",
        title="A user's recent interactions",
        description=f"The {RECENT_COUNT} most recent interactions of one user, newest first, "
        f"as JSON; long text is cut to {MAX_FIELD_CHARS} characters, the whole to {max_chars}.",
        mime_type="application/json",
        security=USER_ID_RULES,
    )
    async def user_interactions(user_id: str) -> str:
        check_user(user_id)
        return await recent_json(backend, user_id, max_chars)

    @server.resource(
        SESSION_TEMPLATE,
        name="session_interactions",
        title="One session's interactions",
        description=f"The turns of one session (conversation) of a user, oldest first, as JSON: "
        f"its newest {SESSION_TURNS} at most; long text is cut to {MAX_FIELD_CHARS} "
        f"characters, the whole to {max_chars}.",
        mime_type="application/json",
        security=SESSION_RULES,
    )
    async def session_interactions(user_id: str, session_id: str) -> str:
        check_user(user_id)
        try:
            SESSION_ID.validate_python(session_id)
        except ValidationError as err:
            raise _invalid(err, "session_id") from None
        return await session_json(backend, user_id, session_id, max_chars)

    async def list_page(
        ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams
    ) -> ListResourcesResult:
        user_id = acting_user_id(default_user_id)
        static: list[Resource] = []
        if params.cursor is None:
            static = await server.list_resources()
            offset = 0
        else:
            offset = read_cursor(params.cursor, user_id)
        room = max(PAGE_SIZE - len(static), 1)
        try:
            page = await backend.sessions(user_id, offset=offset, limit=room)
        except ReflexioMcpError as err:
            if params.cursor is None:  # the status resource matters most when this fails
                logger.warning("resources/list shows no sessions of %r: %s", user_id, err)
                return ListResourcesResult(resources=static)
            raise MCPError(
                code=INTERNAL_ERROR, message=f"cannot list the sessions of {user_id!r}: {err}"
            ) from err
        return ListResourcesResult(
            resources=[*static, *(_session_resource(user_id, s) for s in page.sessions)],
            next_cursor=make_cursor(user_id, offset + room) if page.has_more else None,
        )

    # MCPServer answers resources/list in one page and has no hook for paging it: the SDK's
    # pagination guide writes the low-level handler, which MCPServer keeps private.
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    lowlevel.add_request_handler("resources/list", PaginatedRequestParams, list_page)
    updates.install(server, backend)


def check_user(user_id: str) -> None:
    try:
        USER_ID.validate_python(user_id)
    except ValidationError as err:
        raise _invalid(err, "user_id") from None
    check_own_user(user_id)  # on the decoded id: what the backend would get


def _invalid(error: ValidationError, name: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=invalid_input_text(error, {"": name}))


def _session_resource(user_id: str, session: SessionSummary) -> Resource:
    return Resource(
        uri=session_uri(user_id, session.session_id),
        name=f"session {session.session_id}",
        title=f"Session {session.session_id}",
        description=f"{session.turns} turn(s) of user {user_id!r}, last published "
        f"{iso_time(session.published_at)}",
        mime_type="application/json",
    )


def make_cursor(user_id: str, offset: int) -> str:
    return encode({"v": 1, "u": _fingerprint(user_id), "o": offset})


def read_cursor(cursor: str, user_id: str) -> int:
    """The offset a resources/list cursor of this user carries.

    Raises:
        MCPError: invalid params: the cursor is not one this server gave this user.
    """
    try:
        fields = decode(cursor)
    except NotOurCursor:
        fields = {}
    offset = fields.get("o")
    if (
        fields.get("v") != 1
        or fields.get("u") != _fingerprint(user_id)
        or not isinstance(offset, int)
        or isinstance(offset, bool)
        or not 0 <= offset <= MAX_OFFSET
    ):
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"invalid cursor {cursor[:100]!r}: not a nextCursor this server's "
            "resources/list gave you; pass nextCursor exactly as it came, or list again "
            "without a cursor",
        )
    return offset


def _fingerprint(user_id: str) -> str:
    """Ties a cursor to the user whose sessions it pages, without showing the user id."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


async def recent_json(backend: Backend, user_id: str, max_chars: int) -> str:
    """The newest interactions of a user, bounded in size, as JSON text.

    Raises:
        ResourceError: the backend failed; the message says how to fix it.
    """
    try:
        found = await backend.get_interactions(GetRequest(user_id=user_id, top_k=RECENT_COUNT))
    except ReflexioMcpError as err:
        raise ResourceError(str(err)) from err

    def render(shown: list[dict[str, Any]], truncated: bool) -> str:
        document: dict[str, Any] = {
            "user_id": user_id,
            "count": len(shown),
            "truncated": truncated,
            "interactions": shown,
        }
        if truncated:
            document["more"] = _more(
                len(found) - len(shown),
                max_chars,
                "get_interactions",
                _arguments(user_id, top_k=RECENT_COUNT),
                "it returns these turns whole",
            )
        return _dumps(document)

    return fit(found, max_chars, render)


async def session_json(backend: Backend, user_id: str, session_id: str, max_chars: int) -> str:
    """The newest turns of one session, oldest first, bounded in size, as JSON text.

    Raises:
        ResourceError: the backend failed; the message says how to fix it.
    """
    try:
        found = await backend.session_interactions(user_id, session_id, SESSION_TURNS + 1)
    except ReflexioMcpError as err:
        raise ResourceError(str(err)) from err
    earlier = len(found) > SESSION_TURNS
    turns = found[:SESSION_TURNS]

    def render(shown: list[dict[str, Any]], truncated: bool) -> str:
        document: dict[str, Any] = {
            "user_id": user_id,
            "session_id": session_id,
            "order": "oldest first",
            "count": len(shown),
            "truncated": truncated or earlier,
            "interactions": shown[::-1],
        }
        if truncated or earlier:
            left_out = len(turns) - len(shown)
            oldest = shown[-1]["time"] if shown else None
            document["more"] = _more(
                f"{left_out} or more" if earlier else left_out,
                max_chars,
                "get_interactions",
                _arguments(user_id, top_k=SESSION_TURNS, end_time=oldest),
                "it lists the user's turns, of every session, up to the oldest shown here, "
                "whole; search_interactions with a turn's request_id lists one publish's turns",
            )
        return _dumps(document)

    return fit(turns, max_chars, render)


def _arguments(user_id: str, **more: Any) -> dict[str, Any]:
    """A tool's arguments for `user_id`: a pinned caller's tools take no user_id."""
    named = {} if pinned_user() is not None else {"user_id": user_id}
    return {**named, **{key: value for key, value in more.items() if value is not None}}


def _more(
    left_out: int | str, max_chars: int, tool: str, arguments: dict[str, Any], what: str
) -> dict[str, Any]:
    return {
        "left_out": left_out,
        "why": f"turns are left out (the oldest first) or cut to keep this resource within "
        f"{max_chars} characters",
        "tool": tool,
        "arguments": arguments,
        "note": what,
    }


def fit(turns: list[Interaction], max_chars: int, render: Render) -> str:
    """The document (`render`) of as many of `turns` (newest first) as fit in `max_chars`:
    long text cut at MAX_FIELD_CHARS, then the oldest left out, and a lone turn too large on
    its own cut further (the budget's rule)."""
    whole = render(
        [_dumped(budget.bound(turn, MAX_FIELD_CHARS, hint=CUT_HINT)) for turn in turns], False
    )
    if len(whole) <= max_chars:
        return whole

    def fits(shown: Sequence[Interaction]) -> bool:
        return len(render([_dumped(turn) for turn in shown], True)) <= max_chars

    fitted = budget.fit(turns, fits, cap=MAX_FIELD_CHARS, hint=CUT_HINT)
    text = render([_dumped(turn) for turn in fitted.turns], True)
    return text if len(text) <= max_chars else render([], True)


def _dumped(turn: Interaction) -> dict[str, Any]:
    return turn.model_dump(mode="json")


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=1)
