"""Every request acts within its caller's grant: its user, and what its role allows.

A middleware around every request that:
- lists only the tools the caller's role may call;
- refuses a call to a tool above the caller's role, and a call naming another user than the
  one the caller is pinned to, before anything reaches the backend (resources and prompts
  check the user they are given with `check_own_user`);
- refuses a subscription (`subscriptions/listen`, or the 2025 `resources/subscribe`) of a
  pinned caller to another user's resources, before anything is registered;
- makes the caller's user the one tools and resources act for (`acting_user`), and says
  whether the caller may see what every user holds (`sees_every_user`: the status's
  store-wide counts).

Whom a request acts for is resolved here only: `acting_user_id` (the caller's own user, else
the one named, else the server's default), `pinned_user`, and `names_another_user`, the one
check that a pinned caller named someone else (each protocol refuses it in its own words).

The caller is known by the access token the HTTP layer verified; on stdio, or HTTP without
tokens, every caller has the server's own grant.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, cast
from urllib.parse import quote, unquote

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent

from reflexio_mcp.core.grants import Grant, Role
from reflexio_mcp.core.invalid_input import invalid_input_text

TOOL_ROLES: dict[str, Role] = {
    "publish_interaction": "write",
    "publish_batch": "write",
    "delete_interaction": "write",
    "get_all_interactions": "admin",
    "delete_learning": "write",
}
"""Tools a read role may not call; every other tool only reads."""

acting_user: ContextVar[str | None] = ContextVar("acting_user", default=None)
"""The user the current request is pinned to, if any."""
caller_role: ContextVar[Role] = ContextVar("caller_role", default="write")
"""The current caller's role, for a tool whose arguments decide the role it needs (deleting
an agent playbook, shared by every user, needs admin)."""
sees_every_user: ContextVar[bool] = ContextVar("sees_every_user", default=True)
"""Whether the current caller may see what every user holds: it acts for any user, or its role
may read every user's interactions (get_all_interactions). Any other caller's status counts
only its own user's."""
WATCHING = ("subscriptions/listen", "resources/subscribe")
"""Requests that ask to be told when resources change."""
_USER_URI = re.compile(r"reflexio://users/([^/?#]*)(?:[/?#].*)?", re.DOTALL)


def access_scope(local: Grant, registered: Collection[str]) -> ServerMiddleware[Any]:
    """The middleware; `local` is the grant of callers without a verified token. Calls to
    tools not `registered` are left to tool_call_errors, which says how to enable them."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        grant = _grant(ctx, local)
        if ctx.method == "tools/list":
            return _visible(await call_next(ctx), grant)
        if ctx.method == "tools/call" and ctx.params:
            refusal = _refusal(ctx.params, grant, registered)
            if refusal:
                return CallToolResult(
                    content=[TextContent(type="text", text=refusal)], is_error=True
                )
            ctx = _without_own_user(ctx, grant)
        if ctx.method in WATCHING and ctx.params and grant.user_id is not None:
            for uri in watched_uris(ctx.method, ctx.params):
                check_own_watch(uri, grant.user_id)
        token = acting_user.set(grant.user_id)
        role = caller_role.set(grant.role)
        seeing = sees_every_user.set(
            grant.user_id is None or grant.allows(TOOL_ROLES["get_all_interactions"])
        )
        try:
            return await call_next(ctx)
        finally:
            sees_every_user.reset(seeing)
            caller_role.reset(role)
            acting_user.reset(token)

    return middleware


def _grant(ctx: ServerRequestContext[Any, Any], local: Grant) -> Grant:
    scope: Any = getattr(ctx.request, "scope", None)
    user: object = cast(dict[str, Any], scope).get("user") if isinstance(scope, dict) else None
    if isinstance(user, AuthenticatedUser):
        return Grant.from_claims(user.access_token.claims)
    return local


def _visible(result: HandlerResult, grant: Grant) -> HandlerResult:
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return result
    tools = cast(list[dict[str, Any]], result["tools"])
    return {
        **result,
        "tools": [t for t in tools if grant.allows(TOOL_ROLES.get(t["name"], "read"))],
    }


def _refusal(params: Any, grant: Grant, registered: Collection[str]) -> str | None:
    name = params.get("name")
    if name not in registered:
        return None
    needed = TOOL_ROLES.get(name, "read")
    if not grant.allows(needed):
        return (
            f"{name} needs an access token with role {needed}; this one has role "
            f"{grant.role}. Ask whoever runs the server for a token with role {needed}."
        )
    arguments = params.get("arguments")
    if grant.user_id is None or not isinstance(arguments, dict):
        return None
    named = cast(dict[str, Any], arguments).get("user_id")
    if not names_another_user(named, grant.user_id):
        return None
    return invalid_input_text(
        f"user_id: this server acts only for user {grant.user_id!r} for you, "
        f"so it cannot act for {str(named)[:100]!r}; leave user_id out"
    )


def _without_own_user(
    ctx: ServerRequestContext[Any, Any], grant: Grant
) -> ServerRequestContext[Any, Any]:
    """Drop a user_id naming the pinned user itself: pinned tools take no user_id."""
    params = dict(ctx.params or {})
    arguments = params.get("arguments")
    if grant.user_id is None or not isinstance(arguments, dict) or "user_id" not in arguments:
        return ctx
    params["arguments"] = {
        k: v for k, v in cast(dict[str, Any], arguments).items() if k != "user_id"
    }
    return replace(ctx, params=params)


def pinned_user() -> str | None:
    """The user the current caller is pinned to (a token's, or --pin-user's), if any."""
    return acting_user.get()


def acting_user_id(default: str, named: str = "") -> str:
    """Whom the current request acts for: a pinned caller's own user, else the user it
    `named`, else `default` (the server's). A pinned caller naming another is refused before
    (`names_another_user`)."""
    return acting_user.get() or named or default


def names_another_user(named: object, pinned: str | None) -> bool:
    """Whether a caller `pinned` to a user (None: to none) named another one (`named`, as
    given: "" or None name none)."""
    return pinned is not None and named not in (None, "", pinned)


def check_own_user(named: str) -> None:
    """Refuse a resource or prompt naming another user than the caller's pinned one (each
    checks the id it will use, after the SDK decoded it).

    Raises:
        MCPError: invalid params, naming the URI the caller may read.
    """
    pinned = pinned_user()
    if pinned is not None and names_another_user(named, pinned):
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"this server acts only for user {pinned!r} for you: read "
            f"reflexio://users/{quote(pinned, safe='')}/interactions instead",
        )


def uri_owner(uri: str) -> str | None:
    """The user a `reflexio://users/{user_id}/...` URI names (percent-decoded, as a resource
    read would decode it), or None for a URI naming no user."""
    match = _USER_URI.fullmatch(uri)
    return None if match is None else unquote(match.group(1))


def watched_uris(method: str, params: Mapping[str, Any]) -> list[str]:
    """The resource URIs a subscription request (raw params, wire names) asks to watch."""
    if method == "resources/subscribe":
        uri = params.get("uri")
        return [uri] if isinstance(uri, str) else []
    notifications = params.get("notifications")
    if not isinstance(notifications, dict):
        return []
    uris = cast(dict[str, Any], notifications).get("resourceSubscriptions")
    if not isinstance(uris, list):
        return []
    return [uri for uri in cast(list[Any], uris) if isinstance(uri, str)]


def check_own_watch(uri: str, user_id: str) -> None:
    """Refuse a pinned caller's subscription to a URI naming another user.

    Raises:
        MCPError: invalid params, naming the URIs the caller may watch.
    """
    owner = uri_owner(uri)
    if owner is not None and owner != user_id:
        own = quote(user_id, safe="")
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"this server acts only for user {user_id!r} for you, so it cannot tell "
            f"you of changes to {uri[:300]!r} (another user's); subscribe to "
            f"reflexio://users/{own}/interactions, reflexio://users/{own}/sessions/<session_id>, "
            "reflexio://interactions/recent or reflexio://status instead; nothing was "
            "subscribed",
        )
