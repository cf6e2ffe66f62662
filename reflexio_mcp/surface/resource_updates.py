"""Resources that stay current: whoever watches a resource hears when a publish or a delete
through this server (or a queued publish delivered later) changes it, on both protocol eras.

- 2026-07-28 clients watch with `subscriptions/listen`. The SDK's listen handler serves the
  stream; `ChangeBus` (the server's SubscriptionBus) delivers `ResourceUpdated` events to it.
- 2025-11-25 clients watch with `resources/subscribe` / `resources/unsubscribe`, which MCPServer
  does not serve: the handlers here keep each connection's URIs, forget them when the
  connection ends, and send `notifications/resources/updated` on that connection.

What changed is read from the tools' own results (`ResourceUpdates.middleware` watches
`tools/call`), never from their code:

    publish_interaction / publish_batch, stored   status, the user's interactions, recent (for
                                                  whoever it shows that user), the session
    ... queued (Reflexio could not take it yet)   status (its outbox counts); the rest when the
                                                  outbox delivers it (Backend.watch_stored)
    delete_interaction                            status, the user's interactions, recent, and
                                                  every watched session of that user (a turn
                                                  does not name its session)

`reflexio://interactions/recent` shows the caller's own user (a token's, the pinned one, or the
server's default), so each watcher is told only of its own user's changes; so is
`reflexio://status` for a watcher whose status counts its own user's only (access_scope's
`sees_every_user`), while one that sees the whole store is told of every user's. A URI is
matched however it is percent-encoded (`a%3Ab` and `a:b` name one user), and each watcher is
told with the very URI it watches. Each watcher was checked when it subscribed (access_scope):
a pinned caller cannot watch another user's resources.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, unquote

import anyio
import anyio.lowlevel
from mcp.server import MCPServer
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel

from reflexio_mcp.core.backend import Backend
from reflexio_mcp.surface.access_scope import acting_user_id, sees_every_user, watched_uris

logger = logging.getLogger(__name__)

STATUS_URI = "reflexio://status"
RECENT_URI = "reflexio://interactions/recent"
MAX_SUBSCRIPTIONS = 1000
"""URIs one 2025-era connection may watch at once."""
SEND_SECONDS = 5.0
"""A connection that takes no notification this long is skipped (all are told at once)."""
_USER_URI = re.compile(r"reflexio://users/([^/?#]+)/interactions")
AGENT_PLAYBOOKS_URI = "reflexio://playbooks/agent"
_LEARNED_URI = re.compile(r"reflexio://users/([^/?#]+)/(?:profile|playbooks)")
_SESSION_URI = re.compile(r"reflexio://users/([^/?#]+)/sessions/([^/?#]+)")


def user_uri(user_id: str) -> str:
    return f"reflexio://users/{quote(user_id, safe='')}/interactions"


def learned_uris(user_id: str) -> list[str]:
    """A user's profile and playbooks resources."""
    user = quote(user_id, safe="")
    return [f"reflexio://users/{user}/profile", f"reflexio://users/{user}/playbooks"]


def session_uri(user_id: str, session_id: str) -> str:
    return f"reflexio://users/{quote(user_id, safe='')}/sessions/{quote(session_id, safe='')}"


@dataclass(frozen=True)
class Change:
    """What one tool call (or a delivery) changed."""

    user_id: str
    sessions: frozenset[str] | None
    """The sessions whose turns changed; None: any of the user's (a delete)."""
    turns: bool = True
    """False when only the status changed (a publish queued in the outbox)."""
    learned: bool = False
    """The user's profiles or playbooks changed (a publish learned, a learning deleted)."""
    agent_playbooks: bool = False
    """The agent's playbooks (every user's) changed."""


def affects(uri: str, change: Change, own_user: str, store_wide: bool) -> bool:
    """Whether `change` changes what `uri` shows to a watcher whose own user (the one
    reflexio://interactions/recent shows it) is `own_user`, and whose status counts the whole
    store (`store_wide`) or that user's only."""
    if uri == STATUS_URI:
        return store_wide or own_user == change.user_id
    if uri == AGENT_PLAYBOOKS_URI:
        return change.agent_playbooks
    if match := _LEARNED_URI.fullmatch(uri):
        return change.learned and unquote(match.group(1)) == change.user_id
    if not change.turns:
        return False
    if uri == RECENT_URI:
        return own_user == change.user_id
    if match := _USER_URI.fullmatch(uri):
        return unquote(match.group(1)) == change.user_id
    if match := _SESSION_URI.fullmatch(uri):
        return unquote(match.group(1)) == change.user_id and (
            change.sessions is None or unquote(match.group(2)) in change.sessions
        )
    return False


@dataclass(frozen=True)
class _Watch:
    own_user: str
    store_wide: bool
    uris: frozenset[str]
    list_changed: bool


_listening: ContextVar[_Watch | None] = ContextVar("_listening", default=None)
"""What the subscriptions/listen request being served asks for, for ChangeBus.subscribe."""


@dataclass(frozen=True)
class _Listener:
    deliver: Callable[[ServerEvent], None]
    watch: _Watch | None


class ChangeBus:
    """The server's SubscriptionBus (pass it as `MCPServer(subscriptions=...)`).

    The SDK's listen handler subscribes one listener per `subscriptions/listen` stream, while
    `ResourceUpdates.middleware` holds what that stream asked for and whose it is; the bus
    keeps the two together, so `changed` tells each stream of its own URIs only. Events
    published the SDK's way (`ctx.notify_*`) reach every stream, as with the SDK's own bus.
    """

    def __init__(self, default_user_id: str) -> None:
        self._default_user_id = default_user_id
        self._listeners: dict[object, _Listener] = {}

    async def publish(self, event: ServerEvent) -> None:
        for listener in list(self._listeners.values()):
            _call(listener.deliver, event)
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        token = object()
        self._listeners[token] = _Listener(listener, _listening.get())

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def changed(self, change: Change) -> None:
        for listener in list(self._listeners.values()):
            watch = listener.watch or _Watch(
                self._default_user_id,
                True,
                frozenset(_canonical(change, self._default_user_id)),
                False,
            )
            for uri in sorted(watch.uris):
                if affects(uri, change, watch.own_user, watch.store_wide):
                    _call(listener.deliver, ResourceUpdated(uri=uri))
            if watch.list_changed and change.turns and watch.own_user == change.user_id:
                _call(listener.deliver, ResourcesListChanged())
        await anyio.lowlevel.checkpoint()

    @property
    def listeners(self) -> int:
        return len(self._listeners)


def _call(deliver: Callable[[ServerEvent], None], event: ServerEvent) -> None:
    try:
        deliver(event)
    except Exception:  # one listener's failure must not keep the others from hearing
        logger.exception("a subscription listener failed")


def _canonical(change: Change, default_user_id: str) -> list[str]:
    """The URIs a change touches, in their usual spelling (for a listener whose request this
    module did not see)."""
    uris = [STATUS_URI]
    if change.turns:
        uris.append(user_uri(change.user_id))
        uris += [session_uri(change.user_id, s) for s in sorted(change.sessions or ())]
        if change.user_id == default_user_id:
            uris.append(RECENT_URI)
    if change.learned:
        uris += learned_uris(change.user_id)
    if change.agent_playbooks:
        uris.append(AGENT_PLAYBOOKS_URI)
    return uris


@dataclass
class _Subscriber:
    """One 2025-era connection that subscribed: where to tell it, and what it watches."""

    session: ServerSession
    own_user: str
    store_wide: bool
    uris: set[str] = field(default_factory=set[str])


class ResourceUpdates:
    """Tells the watchers of both eras what a tool call or a delivery changed.

    Make one per server, pass `bus` to `MCPServer(subscriptions=...)`, then `install` it.
    """

    def __init__(self, default_user_id: str, *, stateless: bool = False) -> None:
        self.default_user_id = default_user_id
        self.bus = ChangeBus(default_user_id)
        self._stateless = stateless
        """Streamable HTTP without sessions: a 2025-era client has no stream to be told on."""
        self._subscribers: dict[Connection, _Subscriber] = {}

    def install(self, server: MCPServer[Any], backend: Backend) -> None:
        """Serve resources/subscribe and resources/unsubscribe, watch tools/call results and
        subscriptions/listen requests (as the innermost middleware, inside access_scope), and
        hear of publishes the backend delivers later."""
        # MCPServer serves no resources/subscribe (removed from the 2026-07-28 wire), and has
        # no public way to add a request handler yet: its low-level server has
        # (add_request_handler), as the SDK's migration guide shows.
        lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self.subscribe)
        lowlevel.add_request_handler(
            "resources/unsubscribe", UnsubscribeRequestParams, self.unsubscribe
        )
        server.middleware.append(self.middleware)
        backend.watch_stored(self._delivered)

    @property
    def subscribed_connections(self) -> int:
        """2025-era connections with subscriptions (each forgotten when it ends)."""
        return len(self._subscribers)

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        if self._stateless:
            raise MCPError(
                code=INVALID_REQUEST,
                message="this server runs with --stateless, so it keeps no stream to tell a "
                "2025-era client of changes: resources/subscribe would never fire. Watch with "
                "subscriptions/listen (protocol 2026-07-28), or use a server without --stateless",
            )
        connection = _connection(ctx)
        subscriber = self._subscribers.get(connection)
        if subscriber is None:
            own_user = acting_user_id(self.default_user_id)
            subscriber = _Subscriber(ctx.session, own_user, sees_every_user.get())
            self._subscribers[connection] = subscriber
            connection.exit_stack.callback(self._subscribers.pop, connection, None)
        if params.uri not in subscriber.uris and len(subscriber.uris) >= MAX_SUBSCRIPTIONS:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"this connection already watches {MAX_SUBSCRIPTIONS} resources, the "
                "most one may; unsubscribe from some first",
            )
        subscriber.uris.add(params.uri)
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        subscriber = self._subscribers.get(_connection(ctx))
        if subscriber is not None:
            subscriber.uris.discard(params.uri)
        return EmptyResult()

    async def middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """A ServerMiddleware: notes what a subscriptions/listen stream watches, for the bus;
        after a tools/call that wrote, tells the watchers what changed."""
        if ctx.method == "subscriptions/listen":
            params = ctx.params or {}
            watch = _Watch(
                acting_user_id(self.default_user_id),
                sees_every_user.get(),
                frozenset(watched_uris(ctx.method, params)),
                _asks_list_changes(params),
            )
            token = _listening.set(watch)
            try:
                return await call_next(ctx)
            finally:
                _listening.reset(token)
        result = await call_next(ctx)
        if ctx.method == "tools/call" and ctx.params:
            name = ctx.params.get("name")
            for change in changes(name, result):
                await self.changed(change)
        return result

    async def changed(self, change: Change) -> None:
        """Tell every watcher, of either era, whose resources `change` touches."""
        await self.bus.changed(change)
        told = [
            (subscriber.session, uri)
            for subscriber in list(self._subscribers.values())
            for uri in sorted(subscriber.uris)
            if affects(uri, change, subscriber.own_user, subscriber.store_wide)
        ]
        if told:
            async with anyio.create_task_group() as tasks:
                for session, uri in told:
                    tasks.start_soon(_tell, session, uri)

    async def _delivered(self, user_id: str, session_id: str) -> None:
        await self.changed(Change(user_id, frozenset({session_id})))


async def _tell(session: ServerSession, uri: str) -> None:
    """One notification to one 2025-era connection, given up on after SEND_SECONDS (a client
    that stopped reading must not hold up the call that changed something)."""
    with anyio.move_on_after(SEND_SECONDS):
        try:
            await session.send_resource_updated(uri)
        except Exception:  # the connection may be going; the others still hear
            logger.debug("could not tell a subscriber %s changed", uri, exc_info=True)


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # A ServerSession lives for one request; the subscriptions belong to its connection,
    # which outlives it and whose exit stack says when it ends. The SDK hands the connection
    # to request handlers only inside the session (no public accessor yet).
    return ctx.session._connection  # pyright: ignore[reportPrivateUsage]


def _asks_list_changes(params: Mapping[str, Any]) -> bool:
    notifications = params.get("notifications")
    return isinstance(notifications, dict) and (
        cast(dict[str, Any], notifications).get("resourcesListChanged") is True
    )


WRITING_TOOLS = frozenset(
    {"publish_interaction", "publish_batch", "delete_interaction", "delete_learning"}
)


def changes(tool: object, result: HandlerResult) -> list[Change]:
    """What a tools/call result says was changed (nothing for an error, or a tool that only
    reads). Results are read in wire form (structuredContent)."""
    if tool not in WRITING_TOOLS:
        return []
    wire = result.model_dump(by_alias=True) if isinstance(result, BaseModel) else result
    if not isinstance(wire, dict) or wire.get("isError") is True:
        return []
    content: Any = wire.get("structuredContent")
    if not isinstance(content, dict):
        return []
    structured = cast(dict[str, Any], content)
    if tool == "delete_interaction":
        deleted = structured.get("deleted")
        owner = cast(dict[str, Any], deleted).get("user_id") if isinstance(deleted, dict) else None
        return [Change(owner, None)] if isinstance(owner, str) else []
    if tool == "publish_interaction":
        return _publishes([structured])
    if tool == "delete_learning":
        return _learning_changed(structured)
    results = structured.get("results")
    if not isinstance(results, list):
        return []
    items = [cast(dict[str, Any], r) for r in cast(list[Any], results) if isinstance(r, dict)]
    return _publishes(r for r in items if r.get("ok") is not False)


def _publishes(results: Iterable[dict[str, Any]]) -> list[Change]:
    """One change per user: the sessions that gained turns, or only the status when every
    publish of that user was queued."""
    stored: dict[str, set[str]] = {}
    queued: set[str] = set()
    learned: set[str] = set()
    for result in results:
        user, session, status = (
            result.get("user_id"),
            result.get("session_id"),
            result.get("status"),
        )
        if not isinstance(user, str) or not isinstance(session, str):
            continue
        if status == "stored":
            stored.setdefault(user, set()).add(session)
            if "learned " in str(result.get("learning") or ""):
                learned.add(user)
        elif status == "queued":
            queued.add(user)
    return [
        Change(user, frozenset(sessions), learned=user in learned)
        for user, sessions in stored.items()
    ] + [Change(user, None, turns=False) for user in sorted(queued - set(stored))]


def _learning_changed(structured: dict[str, Any]) -> list[Change]:
    """delete_learning's result: the owner's profile or playbooks, or the agent's playbooks."""
    learning = structured.get("learning")
    if structured.get("status") not in ("deleted", "corrected") or not isinstance(learning, dict):
        return []
    fields = cast(dict[str, Any], learning)
    owner = fields.get("user_id")
    if fields.get("kind") == "agent_playbook":
        return [Change("", None, turns=False, agent_playbooks=True)]
    return [Change(owner, None, turns=False, learned=True)] if isinstance(owner, str) else []
