"""The Reflexio backend: each Backend call as one (or a few) calls to Reflexio's API.

Reflexio's request bodies and answers are in wire.py. The bridge also fixes what Reflexio gets
wrong for a tool: ordering, top_k, an honest delete, and the meaning of a request_id published
twice.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar, Unpack

import anyio
from pydantic import BaseModel, ValidationError

from reflexio_mcp.backends.reflexio.http import HttpOptions, ReflexioHttpClient
from reflexio_mcp.backends.reflexio.http11 import Answer
from reflexio_mcp.backends.reflexio.learnings import ReflexioLearnings
from reflexio_mcp.backends.reflexio.wire import (
    DeleteAnswer,
    DeleteBody,
    InteractionsAnswer,
    NewestBody,
    PublishAnswer,
    RequestsAnswer,
    RequestsBody,
)
from reflexio_mcp.core import defaults
from reflexio_mcp.core.backend import StoredListener, already_stored
from reflexio_mcp.core.errors import NotReflexio, ReflexioMcpError, Rejected, not_found
from reflexio_mcp.core.limits import MAX_RESULTS, MAX_TIMESTAMP
from reflexio_mcp.core.models import (
    GetRequest,
    Interaction,
    Keyset,
    Matches,
    Published,
    PublishRequest,
    PublishStatus,
    SearchRequest,
    newest_first,
)
from reflexio_mcp.core.status import BackendStatus, KnownIds, SessionPage, SessionSummary

ALL = 2**31 - 1
"""A count that means "every interaction of the user"."""
NEWEST_WINDOWS = (100, 1_000, 10_000, ALL)
"""How many of a user's newest interactions to look through, in turn, for one to delete
or to fill a time window."""
PARSE_IN_THREAD_BYTES = 1_000_000
"""Larger answers are parsed off the event loop, so other calls are not held up."""
SESSION_PAGE = 25
"""Sessions per /api/get_requests call when looking for session ids: each comes whole."""
SESSION_SCAN = 100
"""Completing a session id looks through at most this many of the user's latest sessions."""
USER_SCAN = 1000
"""Completing a user id looks at the users of this many of the newest turns (every user's)."""
USER_SCAN_SECONDS = 10.0
"""One user scan serves completions this long: Reflexio takes 30 get_all_interactions a
minute per client, and a client asks for completions as its user types."""

KNOWN_SESSIONS = 10_000
"""Publishes whose session is remembered (a publish's session never changes)."""
CONCURRENT_LOOKUPS = 8
"""Calls to Reflexio at once when one answer needs several sessions looked up."""

_Answer = TypeVar("_Answer", bound=BaseModel)
_Item = TypeVar("_Item")


def _wanted(request: SearchRequest) -> int:
    """How many results a search asks for; Reflexio's own default is 10."""
    return min(k for k in (request.most_recent_k, request.top_k, 10) if k)


def _within(interaction: Interaction, window: SearchRequest) -> bool:
    start, end = window.start_time, window.end_time
    return (start is None or interaction.created_at >= start.timestamp()) and (
        end is None or interaction.created_at <= end.timestamp()
    )


async def _newest_exactly(
    newest: Callable[[int], Awaitable[list[Interaction]]], want: int, after: Keyset | None
) -> list[Interaction]:
    """The newest `want` interactions by (created_at, id) that `after` holds (all without it),
    from `newest(n)`: Reflexio's newest n by created_at alone, which cuts the turns of the
    oldest second it returns anywhere (it keeps their older ids). Only the turns newer than
    that second are certain, so it asks for more until enough are, or there are no more."""
    count = want + 1  # one more tells, most often, that the oldest second was not cut
    while True:
        found = await newest(count)
        held = newest_first([i for i in found if after is None or after.holds(i)])
        if len(found) < count or count >= ALL:
            return held[:want]
        oldest = min(i.created_at for i in found)
        certain = [i for i in held if i.created_at > oldest]
        # Past the keyset's floor, every turn it holds is in (and newer than the oldest second).
        if len(certain) >= want or (after is not None and oldest < after.floor_created):
            return certain[:want]
        count = next(w for w in NEWEST_WINDOWS if w > count)


def _moment(seconds: int) -> datetime | None:
    """Unix seconds as a time bound Reflexio takes; None (no bound) outside what it stores."""
    return datetime.fromtimestamp(seconds, UTC) if 0 < seconds <= MAX_TIMESTAMP else None


class ReflexioApi:
    """Forwards each Backend call to a Reflexio server over one long-lived connection pool.

    Use as an async context manager: the pool opens on enter and closes on exit.
    """

    learns = True
    remote = True

    def __init__(self, url: str, **options: Unpack[HttpOptions]) -> None:
        self._http = ReflexioHttpClient(url, **options)
        self.url = self._http.url
        self.description = f"Reflexio at {self.url}"
        self.learnings = ReflexioLearnings(self._http)
        self._users_seen: tuple[float, list[str], bool] | None = None
        self._session_of: OrderedDict[tuple[str, str], str] = OrderedDict()
        """(user_id, request_id) -> the publish's session_id, newest looked up last."""

    def __repr__(self) -> str:
        return f"ReflexioApi({self._http!r})"

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> Published:
        return await self.send_publish(
            request.checked_body(),
            request.user_id,
            request.request_id,
            wait_for_response=wait_for_response,
        )

    async def send_publish(
        self,
        body: bytes,
        user_id: str,
        request_id: str,
        *,
        wait_for_response: bool,
        read_seconds: float | None = None,
        retries: int | None = None,
    ) -> Published:
        """POST one publish body. "already exists" for its request_id means an earlier attempt
        got through (nothing stored twice) when that publish is this user's; another user's
        is a clash (InvalidInput). `read_seconds` and `retries` override the client's own."""
        response, retried = await self._http.send(
            "POST",
            "/api/publish_interaction",
            body=body,
            params={"wait_for_response": "true"} if wait_for_response else None,
            read_timeout=read_seconds
            or (defaults.WAIT_FOR_RESPONSE_SECONDS if wait_for_response else None),
            retries=retries,
        )
        answer = await self._parse(response, PublishAnswer)
        if not answer.success and "already exists" in answer.message:
            if retried:  # an earlier attempt of this very call got through; its answer was lost
                return Published(
                    message="Interaction published successfully (delivered by an earlier attempt)"
                )
            mine = await self._found(
                SearchRequest(user_id=user_id, request_id=request_id, top_k=1), None
            )
            return already_stored(request_id, same_user=bool(mine))
        if not answer.success:
            raise Rejected(
                f"Reflexio did not store the publish: {self._http.scrubbed(answer.message)}",
                200,
            )
        self._users_seen = None  # the publish may be a new user's first
        return Published(
            message=answer.message,
            warnings=answer.warnings,
            learning_status=answer.learning_status,
            learning_reason=answer.learning_reason,
            profiles_learned=(answer.profiles_added or 0) + (answer.profiles_updated or 0),
            playbooks_learned=(answer.playbooks_added or 0) + (answer.playbooks_updated or 0),
        )

    async def learning_status(self, request_id: str) -> tuple[str, str | None]:
        """Where Reflexio's learning from a stored publish stands: pending, processing, done,
        failed or not_tracked, and why (GET /api/learning_status, a read: no publish)."""
        return await self.learnings.status(request_id)

    async def publish_status(self, user_id: str, request_id: str) -> PublishStatus:
        """Delivered when Reflexio holds turns of the publish; else unknown (this client keeps
        no outbox)."""
        found = await self._search(
            SearchRequest(user_id=user_id, request_id=request_id, top_k=MAX_RESULTS)
        )
        if found:
            return PublishStatus(
                request_id=request_id,
                user_id=user_id,
                status="delivered",
                turns=len(found),
                detail=f"Reflexio holds {len(found)} turn(s) of this publish",
            )
        return PublishStatus(
            request_id=request_id,
            user_id=user_id,
            status="unknown",
            detail=f"no publish with request_id {request_id!r} for user {user_id!r} waits in the "
            "outbox or is stored in Reflexio (its turns may all have been deleted)",
        )

    async def get_interactions(
        self, request: GetRequest, after: Keyset | None = None
    ) -> list[Interaction]:
        if after is not None:  # Reflexio's own window narrows the answer to the keyset's seconds
            window = {
                "start_time": _moment(after.floor_created),
                # one second more when they are equal: Reflexio wants the end after the start
                "end_time": _moment(max(after.last_created, after.floor_created + 1)),
            }
            request = request.model_copy(update=window)

        async def newest(count: int) -> list[Interaction]:
            body = request.model_copy(update={"top_k": count})
            return await self._interactions("/api/get_interactions", body)

        return await _newest_exactly(newest, request.top_k, after)

    async def search_interactions(
        self, request: SearchRequest, among: Sequence[int] | None = None
    ) -> Matches:
        # Reflexio's search_interactions does not say which mode it ran, nor give a score.
        found = await self._found(request, among)
        return Matches(interactions=await self._with_sessions(request.user_id, found))

    async def _with_sessions(
        self, user_id: str, interactions: list[Interaction]
    ) -> list[Interaction]:
        """The interactions with their session_id, which Reflexio's turns do not carry: each
        publish's is asked of /api/get_requests once (its request_id alone: that publish's
        turns, not the session's) and remembered, since it never changes. A publish deleted
        meanwhile keeps session_id ""."""
        missing = {
            i.request_id
            for i in interactions
            if not i.session_id and (user_id, i.request_id) not in self._session_of
        }

        async def look_up(request_id: str) -> None:
            body = RequestsBody(user_id=user_id, request_id=request_id, top_k=1)
            answer = await self._sessions(body)
            for session in answer.sessions:
                if any(r.request.request_id == request_id for r in session.requests):
                    self._remember_session(user_id, request_id, session.session_id)

        if missing:
            await _each(sorted(missing), look_up)
        known = self._session_of
        return [
            i.model_copy(update={"session_id": known[(user_id, i.request_id)]})
            if not i.session_id and (user_id, i.request_id) in known
            else i
            for i in interactions
        ]

    def _remember_session(self, user_id: str, request_id: str, session_id: str) -> None:
        self._session_of[(user_id, request_id)] = session_id
        self._session_of.move_to_end((user_id, request_id))
        while len(self._session_of) > KNOWN_SESSIONS:
            self._session_of.popitem(last=False)

    async def _found(
        self, request: SearchRequest, among: Sequence[int] | None
    ) -> list[Interaction]:
        if among is not None:
            return await self._found_again(request, among)
        if request.start_time is None and request.end_time is None:
            return await self._search(request)
        # Reflexio 0.2.32's search compares its text timestamps with numbers, so it filters
        # by time wrongly: the bridge sends no window and keeps what falls inside it.
        if not request.query:
            return await self._newest_within(request)
        return await self._matches_within(request)

    async def _search(self, request: SearchRequest) -> list[Interaction]:
        if not request.query and not request.most_recent_k:
            # Reflexio answers [] to a search with neither; list the newest instead.
            request = request.model_copy(update={"most_recent_k": request.top_k or 10})
        found = await self._interactions("/api/search_interactions", request)
        if request.most_recent_k:
            found = newest_first(found)  # Reflexio returns these oldest first
        # Reflexio's SQLite store ignores top_k (it caps at most_recent_k or 10).
        return found[: request.top_k] if request.top_k else found

    async def _found_again(self, request: SearchRequest, among: Sequence[int]) -> list[Interaction]:
        """The interactions of `among` (found by `request` before) still stored: looked for in
        the search's growing best matches, until all are found or there are no more matches
        (new, better matches may have pushed them down; a deleted one is never found)."""
        wanted = set(among)
        anytime = request.model_copy(update={"start_time": None, "end_time": None, "top_k": None})
        found: list[Interaction] = []
        for window in NEWEST_WINDOWS:
            matches = await self._search(anytime.model_copy(update={"most_recent_k": window}))
            found = [i for i in matches if i.interaction_id in wanted]
            if len(found) == len(wanted) or len(matches) < window:
                break
        return found

    async def _matches_within(self, request: SearchRequest) -> list[Interaction]:
        """The best matches inside the window; when too few of Reflexio's best fall inside it,
        filled with further matches inside it, newest first, from its best 1000."""
        wanted = _wanted(request)
        anytime = request.model_copy(update={"start_time": None, "end_time": None})
        found = [i for i in await self._search(anytime) if _within(i, request)]
        if len(found) < wanted:
            wider = anytime.model_copy(update={"most_recent_k": MAX_RESULTS, "top_k": None})
            seen = {i.interaction_id for i in found}
            more = await self._search(wider)
            found += [i for i in more if _within(i, request) and i.interaction_id not in seen]
        found = found[:wanted]
        return newest_first(found) if request.most_recent_k else found

    async def _newest_within(self, request: SearchRequest) -> list[Interaction]:
        """The newest k of a user's interactions inside the request's time window, looking
        through growing newest-first windows (bounded SQL queries) until k are found."""
        wanted = _wanted(request)
        inside: list[Interaction] = []
        for window in (wanted, *(w for w in NEWEST_WINDOWS if w > wanted)):
            newest = await self._newest(request.user_id, window, request.request_id)
            inside = [i for i in newest if _within(i, request)]
            passed_start = (
                bool(newest)
                and request.start_time is not None
                and (newest[-1].created_at < request.start_time.timestamp())
            )
            if len(inside) >= wanted or len(newest) < window or passed_start:
                break
        return inside[:wanted]

    async def _newest(
        self, user_id: str, count: int, request_id: str | None = None
    ) -> list[Interaction]:
        """A user's newest `count` interactions, newest first: a bounded SQL query on
        Reflexio's side, unlike get_interactions, which reads the whole history."""
        body = NewestBody(user_id=user_id, most_recent_k=count, request_id=request_id)
        return newest_first(await self._interactions("/api/search_interactions", body))

    async def get_all_interactions(
        self, limit: int, after: Keyset | None = None
    ) -> list[Interaction]:
        async def newest(count: int) -> list[Interaction]:
            response, _ = await self._http.send(
                "GET", "/api/get_all_interactions", params={"limit": count}
            )
            return await self._checked_interactions(response)

        return await _newest_exactly(newest, limit, after)

    async def find_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        # Reflexio has no lookup by id; its newest-first listing is a bounded SQL query, so
        # look through growing windows of it.
        for window in NEWEST_WINDOWS:
            newest = await self._newest(user_id, window)
            target = next((i for i in newest if i.interaction_id == interaction_id), None)
            if target is not None:
                return target
            if len(newest) < window:
                break
        raise not_found(user_id, interaction_id)

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        # Reflexio answers "Deleted successfully" for ids that do not exist or belong to someone
        # else, so look first: only then can the answer say what was deleted.
        target = await self.find_interaction(user_id, interaction_id)
        body = DeleteBody(user_id=user_id, interaction_id=interaction_id)
        response, _ = await self._http.send(
            "DELETE", "/api/delete_interaction", body=body.model_dump_json().encode()
        )
        answer = await self._parse(response, DeleteAnswer)
        if not answer.success:
            raise Rejected(
                f"Reflexio did not delete it: {self._http.scrubbed(answer.message)}", 200
            )
        return target

    async def session_interactions(
        self, user_id: str, session_id: str, top_k: int
    ) -> list[Interaction]:
        return newest_first(await self._session_turns(user_id, session_id))[:top_k]

    async def _session_turns(self, user_id: str, session_id: str) -> list[Interaction]:
        # /api/get_requests answers one session whole: every publish with every turn.
        answer = await self._sessions(RequestsBody(user_id=user_id, session_id=session_id, top_k=1))
        return [t for s in answer.sessions if s.session_id == session_id for t in s.turns(user_id)]

    async def session_neighbours(
        self, user_id: str, interactions: Sequence[Interaction], turns: int
    ) -> dict[int, list[Interaction]]:
        """Each session read whole once (Reflexio has no narrower read of a session)."""
        wanted = {i.session_id for i in interactions if i.session_id} if turns > 0 else set[str]()
        ordered: dict[str, list[Interaction]] = {}

        async def read(session_id: str) -> None:
            found = await self._session_turns(user_id, session_id)
            ordered[session_id] = sorted(found, key=_session_order)

        await _each(sorted(wanted), read)
        found: dict[int, list[Interaction]] = {}
        for hit in interactions:
            session = ordered.get(hit.session_id, [])
            keys = [_session_order(i) for i in session]
            start = bisect.bisect_left(keys, _session_order(hit))
            end = bisect.bisect_right(keys, _session_order(hit))
            found[hit.interaction_id] = [
                *session[max(0, start - turns) : start],
                *session[end : end + turns],
            ]
        return found

    async def sessions(self, user_id: str, *, offset: int, limit: int) -> SessionPage:
        answer = await self._sessions(RequestsBody(user_id=user_id, top_k=limit, offset=offset))
        found = [
            SessionSummary(session_id=s.session_id, turns=turns, published_at=s.published_at())
            for s in answer.sessions
            if (turns := len(s.turns(user_id)))
        ]
        return SessionPage(sessions=found, has_more=answer.has_more)

    async def session_ids(self, user_id: str, prefix: str, limit: int) -> KnownIds:
        # Reflexio has no list of session ids: its sessions come whole (every turn), so look
        # through the latest SESSION_SCAN, SESSION_PAGE at a time, until `limit` match.
        found: list[str] = []
        seen_all = False
        for offset in range(0, SESSION_SCAN, SESSION_PAGE):
            page = await self.sessions(user_id, offset=offset, limit=SESSION_PAGE)
            found += [s.session_id for s in page.sessions if s.session_id.startswith(prefix)]
            if not page.has_more:
                seen_all = True
                break
            if len(found) > limit:
                break
        return KnownIds(
            values=found[:limit],
            total=len(found) if seen_all else None,
            has_more=len(found) > limit or not seen_all,
        )

    async def user_ids(self, prefix: str, limit: int) -> KnownIds:
        users, seen_all = await self._recent_users()
        found = [user for user in users if user.startswith(prefix)]
        return KnownIds(
            values=found[:limit],
            total=len(found) if seen_all else None,
            has_more=len(found) > limit or not seen_all,
        )

    async def _recent_users(self) -> tuple[list[str], bool]:
        """The users of the newest USER_SCAN turns, most recent first, and whether that is
        every user; kept USER_SCAN_SECONDS."""
        now = time.monotonic()
        if self._users_seen is not None and now - self._users_seen[0] < USER_SCAN_SECONDS:
            return self._users_seen[1], self._users_seen[2]
        newest = await self.get_all_interactions(USER_SCAN)
        users = list(dict.fromkeys(i.user_id for i in newest))
        self._users_seen = (now, users, len(newest) < USER_SCAN)
        return users, len(newest) < USER_SCAN

    async def _sessions(self, body: RequestsBody) -> RequestsAnswer:
        response, _ = await self._http.send(
            "POST", "/api/get_requests", body=body.model_dump_json(exclude_none=True).encode()
        )
        answer = await self._parse(response, RequestsAnswer)
        if not answer.success:
            reason = self._http.scrubbed(answer.msg or "no reason given")
            raise Rejected(f"Reflexio refused: {reason}", 200)
        return answer

    def watch_stored(self, listener: StoredListener) -> Callable[[], None]:
        """This client has no outbox: a publish is stored when it answers, or not at all."""
        return _nothing

    async def health(self) -> None:
        """One GET /health, no retries.

        Raises:
            ReflexioMcpError: it did not answer as Reflexio does.
        """
        await self._http.send("GET", "/health", retries=0)

    async def status(self, user_id: str, *, store_wide: bool = True) -> BackendStatus:
        """Whether Reflexio answers; it counts nothing for anyone, so `store_wide` changes
        nothing here."""
        try:
            await self._http.send("GET", "/health")
        except ReflexioMcpError as err:
            return BackendStatus(
                backend="reflexio", location=self.url, reachable=False, learning=True,
                detail=str(err),
            )  # fmt: skip
        return BackendStatus(
            backend="reflexio",
            location=self.url,
            reachable=True,
            learning=True,
            detail="Reflexio stores the interactions and learns profiles and playbooks from "
            "them. Counts are not shown: Reflexio can count a user's interactions only by "
            "reading all of them.",
        )

    async def _interactions(self, path: str, request: BaseModel) -> list[Interaction]:
        body = request.model_dump_json(exclude_none=True).encode()
        response, _ = await self._http.send("POST", path, body=body)
        return await self._checked_interactions(response)

    async def _checked_interactions(self, response: Answer) -> list[Interaction]:
        answer = await self._parse(response, InteractionsAnswer)
        if not answer.success:
            reason = self._http.scrubbed(answer.msg or "no reason given")
            raise Rejected(f"Reflexio refused: {reason}", 200)
        return answer.interactions

    async def _parse(self, response: Answer, model: type[_Answer]) -> _Answer:
        try:
            if len(response.content) > PARSE_IN_THREAD_BYTES:
                return await anyio.to_thread.run_sync(model.model_validate_json, response.content)
            return model.model_validate_json(response.content)
        except ValidationError:
            raise NotReflexio(
                f"Reflexio at {self.url} answered {response.path} with something that is not "
                "its API (is REFLEXIO_URL a Reflexio 0.2 server?)",
                response.status_code,
            ) from None


def _nothing() -> None:
    pass


def _session_order(interaction: Interaction) -> tuple[int, int]:
    return interaction.created_at, interaction.interaction_id


async def _each(items: Iterable[_Item], work: Callable[[_Item], Awaitable[None]]) -> None:
    """`work` on every item, CONCURRENT_LOOKUPS at a time; the first failure is raised as
    itself (not in an exception group), the rest of the work cancelled."""
    limiter = anyio.CapacityLimiter(CONCURRENT_LOOKUPS)

    async def one(item: _Item) -> None:
        async with limiter:
            await work(item)

    try:
        async with anyio.create_task_group() as group:
            for item in items:
                group.start_soon(one, item)
    except* ReflexioMcpError as failures:
        raise failures.exceptions[0] from None
