"""The Reflexio backend as the tools use it: no publish lost, no call stalled.

- Every publish is journaled in the outbox before it is sent. When Reflexio takes it at once
  it is answered as before; when Reflexio cannot (down, restarting, 429, 5xx, slow), the
  publish is answered `queued` at once and a background task delivers it later, in order.
- A circuit breaker watches every call: after repeated failures, reads fail fast with the
  backend-down message and publishes go straight to the outbox, until a probe of /health
  finds Reflexio back.
- Publishes are paced under Reflexio's rate limit (60 writes a minute by default).
- Publishes go to Reflexio one at a time (the deliverer's lane), each attempt bounded by its
  timeout. A publish call waits for the lane at most LANE_WAIT_SECONDS, then is answered
  `queued`: one slow publish cannot keep other callers waiting. A wait_for_response publish
  is delivered plainly like any other, then waits for learning by asking
  /api/learning_status, outside the lane: other publishes go on meanwhile.
- Only backend failures count toward the breaker: a call cancelled on this side (the client
  cancelled, a deadline) gives its row back to the outbox without counting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self, TypeVar

import anyio
import anyio.abc

from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.breaker import CircuitBreaker
from reflexio_mcp.backends.reflexio.delivery import Deliverer
from reflexio_mcp.backends.reflexio.learnings import GuardedLearnings
from reflexio_mcp.backends.reflexio.outbox import Enqueued, Entry, Outbox, Row
from reflexio_mcp.core import defaults
from reflexio_mcp.core.backend import StoredListener, already_stored
from reflexio_mcp.core.errors import (
    BackendTimeout,
    BackendUnreachable,
    NotReflexio,
    OutboxFull,
    ReflexioMcpError,
    ServerError,
    StoreCorrupt,
    StoreError,
)
from reflexio_mcp.core.models import (
    GetRequest,
    Interaction,
    Keyset,
    Matches,
    Published,
    PublishRequest,
    PublishStatus,
    SearchRequest,
)
from reflexio_mcp.core.pacing import Pacer, full_jitter
from reflexio_mcp.core.status import BackendStatus, KnownIds, OutboxStatus, SessionPage

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
BACKEND_FAILURES = (BackendUnreachable, NotReflexio, ServerError)
"""Failures that say the backend is down or broken (not that the call was wrong)."""
LEARNING_POLL_SECONDS = 0.25
MAX_LEARNING_POLL_SECONDS = 5.0
"""Asking how learning goes, at growing intervals: at most 12 reads a minute once it takes a
while, well under Reflexio's 120 reads a minute."""


class ReflexioBackend:
    """A Backend: ReflexioApi behind an outbox, a circuit breaker and a pacer.

    Use as an async context manager: it opens the client and the outbox and runs the
    delivery and probe tasks until exit.
    """

    learns = True
    remote = True

    def __init__(
        self,
        client: ReflexioApi,
        outbox: Outbox,
        *,
        publish_rate: float = defaults.PUBLISH_RATE_PER_MINUTE,
        timeout: float = defaults.TIMEOUT_SECONDS,
        deadline: float = defaults.DEADLINE_SECONDS,
    ) -> None:
        self.description = client.description
        self.url = client.url
        self._client = client
        self._outbox = outbox
        self._breaker = CircuitBreaker(client.description)
        self.learnings = GuardedLearnings(client.learnings, self._guarded)
        """What Reflexio learned: reads (and corrections) through the breaker, no outbox."""
        self._pacer = Pacer(publish_rate)
        # A publish's own attempt ends well inside the tool's deadline: the caller must get
        # its answer (and request_id), not the deadline's error.
        self._publish_seconds = min(timeout, defaults.PUBLISH_ATTEMPT_SECONDS, deadline / 2)
        self._deliverer = Deliverer(
            client,
            outbox,
            self._breaker,
            self._pacer,
            attempt_seconds=timeout,
            on_delivered=self._delivered,
        )
        self._stored_listeners: dict[object, StoredListener] = {}
        self._outbox_open = False
        self._outbox_problem: str | None = None
        self._opening = anyio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tasks: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"ReflexioBackend({self._client!r}, {self._outbox!r})"

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._client)
            stack.push_async_callback(self._close_outbox)
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tasks.cancel_scope.cancel)
            self._tasks.start_soon(self._probe_while_open)
            if await self._open_outbox():
                logger.info("%s", await self._waiting_line())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            await self._stack.__aexit__(exc_type, exc, tb)
            self._stack = None

    async def _open_outbox(self) -> bool:
        """Open the outbox (again) if it is not open; False when it cannot be, with why."""
        async with self._opening:
            if self._outbox_open:
                return True
            try:
                await self._outbox.__aenter__()
            except StoreError as err:
                if self._outbox_problem != str(err):
                    logger.error(  # noqa: TRY400  the message is the whole story
                        "the outbox cannot be used (%s): publishes go straight to Reflexio, "
                        "and one it cannot take now is refused, until the outbox can be written",
                        err,
                    )
                self._outbox_problem = str(err)
                return False
            self._outbox_open = True
            self._outbox_problem = None
            if self._tasks is not None:
                self._tasks.start_soon(self._deliverer.run)  # once: the outbox opens once
            return True

    async def _close_outbox(self) -> None:
        if not self._outbox_open:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._outbox.release_mine()
            except StoreError as err:
                logger.warning("could not release this process's outbox claims: %s", err)
            await self._outbox.__aexit__(None, None, None)
        self._outbox_open = False

    async def _waiting_line(self) -> str:
        stats = await self._outbox.stats()
        line = f"outbox {stats.path}: "
        if stats.waiting:
            age = time.time() - (stats.oldest_queued_at or time.time())
            line += (
                f"{stats.waiting} publish(es) wait for {self.description} (oldest "
                f"{_age(age)}); delivering them"
            )
        else:
            line += "no publishes waiting"
        if stats.failed:
            line += f"; {stats.failed} refused by Reflexio kept as failed"
        for url, count in stats.other_targets.items():
            line += (
                f"; {count} wait for another Reflexio ({url}): start reflexio-mcp with that "
                "REFLEXIO_URL to deliver them"
            )
        return line

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, request: PublishRequest, *, wait_for_response: bool) -> Published:
        body = request.checked_body()
        if not await self._open_outbox():
            return await self._publish_unjournaled(request, body, wait_for_response)
        seconds = self._publish_seconds
        send_now = not self._breaker.is_open and self._pacer.take()
        try:
            queued = await self._outbox.enqueue(
                request,
                body,
                wait_for_response=wait_for_response,
                lease=self._deliverer.lease(seconds) if send_now else None,
            )
        except OutboxFull:
            self._give_back(send_now)
            raise
        except StoreError as err:
            self._give_back(send_now)
            self._outbox_problem = str(err)
            if isinstance(err, StoreCorrupt):
                await self._replace_damaged_outbox(str(err.__cause__ or err))
            return await self._publish_unjournaled(request, body, wait_for_response)
        self._give_back(send_now and not queued.claimed)
        if queued.outcome in ("delivered", "clash"):
            return already_stored(request.request_id, same_user=queued.outcome == "delivered")
        if queued.outcome == "waiting":
            return self._queued(
                request,
                "a publish with this request_id already waits in the outbox; nothing was "
                "queued twice",
            )
        if not queued.claimed:
            self._deliverer.wake()
            return self._queued(request, self._why_not_now(queued), waited=wait_for_response)
        row = Row(
            queued.seq, request.request_id, request.user_id, request.session_id, body,
            wait_for_response, attempts=1, server_errors=0,
        )  # fmt: skip
        try:
            sent = await self._deliverer.send(
                row, seconds=seconds, lane_seconds=defaults.LANE_WAIT_SECONDS
            )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # released: the deliverer sends it later
                await self._deliverer.release(
                    row, "the publish call was cancelled before Reflexio answered it"
                )
            raise
        if sent.state == "delivered" and sent.published is not None:
            if wait_for_response:
                learned = await self._learned(request.request_id, sent.published)
                return await self._counted(request.user_id, request.request_id, learned)
            return sent.published
        if sent.state == "failed" and sent.error is not None:
            try:  # the caller is told now: nothing to keep for later
                await self._outbox.forget(row.seq)
            except StoreError as err:
                logger.warning("could not drop a refused publish from the outbox: %s", err)
            raise sent.error
        self._deliverer.wake()
        return self._queued(
            request, f"Reflexio could not take it now ({sent.error})", waited=wait_for_response
        )

    async def _learned(self, request_id: str, published: Published) -> Published:
        """`published` with how Reflexio's learning from it ended, asked until it ends (or
        stalls waiting for more turns, as Reflexio's own wait_for_response does) or
        WAIT_FOR_RESPONSE_SECONDS pass. Reads only: the lane stays free for other publishes."""
        status, reason = "deferred", "wait_timeout"
        pause = LEARNING_POLL_SECONDS
        with anyio.move_on_after(defaults.WAIT_FOR_RESPONSE_SECONDS):
            while True:
                try:
                    asked, why = await self._client.learning_status(request_id)
                except BackendTimeout as err:  # busy learning, maybe: ask again, to the end
                    status, reason = "unknown", f"Reflexio could not say ({err})"
                except ReflexioMcpError as err:
                    status, reason = "unknown", f"Reflexio could not say ({err})"
                    break
                else:
                    if asked not in ("pending", "processing"):  # done, failed, not_tracked
                        status, reason = asked, why
                        break
                    if why == "waiting_for_window":  # it learns once more turns arrive
                        status, reason = "deferred", why
                        break
                    status, reason = "deferred", "wait_timeout"
                await anyio.sleep(pause)
                pause = min(pause * 2, MAX_LEARNING_POLL_SECONDS)
        return published.model_copy(update={"learning_status": status, "learning_reason": reason})

    async def _counted(self, user_id: str, request_id: str, published: Published) -> Published:
        """`published` with how many profiles and playbooks were learned from it, once its
        learning is done (the outbox's publish does not wait, so Reflexio does not count)."""
        if published.learning_status != "done":
            return published
        try:
            learned = await self.learnings.from_publish(user_id, request_id)
        except ReflexioMcpError as err:
            logger.warning("could not tell what was learned from %r: %s", request_id, err)
            return published
        profiles = sum(1 for learning in learned if learning.kind == "profile")
        return published.model_copy(
            update={"profiles_learned": profiles, "playbooks_learned": len(learned) - profiles}
        )

    def _give_back(self, taken: bool) -> None:
        if taken:
            self._pacer.give_back()

    def _why_not_now(self, queued: Enqueued) -> str:
        if self._breaker.is_open:
            return f"Reflexio is not answering ({self._breaker.last_error})"
        if queued.ahead:
            return (
                f"{queued.ahead} earlier publish(es) of this session wait in the outbox before it"
            )
        if queued.sending_elsewhere:
            return (
                "another reflexio-mcp process sharing this outbox is sending to Reflexio, which "
                "takes one publish at a time"
            )
        return (
            f"pacing under Reflexio's rate limit ({self._pacer.per_minute:g} publishes a minute; "
            "REFLEXIO_MCP_PUBLISH_RATE sets it)"
        )

    def _queued(self, request: PublishRequest, reason: str, *, waited: bool = False) -> Published:
        later = " (without waiting for learning)" if waited else ""
        return Published(
            message=f"queued, not stored yet: {reason}. The publish is kept on disk in the "
            f"outbox ({self._outbox.path}) and delivered in the background{later}, in order; "
            f"get_publish_status with request_id {request.request_id!r} tells when",
            queued=True,
        )

    async def _publish_unjournaled(
        self, request: PublishRequest, body: bytes, wait_for_response: bool
    ) -> Published:
        """Without a usable outbox: straight to Reflexio, or refused with both reasons."""
        problem = self._outbox_problem or "the outbox cannot be written"
        if self._breaker.is_open:
            raise BackendUnreachable(
                f"not stored: Reflexio is not answering ({self._breaker.last_error}) and the "
                f"outbox cannot keep the publish ({problem}); fix the outbox or wait for "
                "Reflexio, then publish again"
            )
        try:
            published = await self._guarded(
                lambda: self._client.send_publish(
                    body, request.user_id, request.request_id, wait_for_response=wait_for_response
                )
            )
        except (BackendUnreachable, NotReflexio, ServerError) as err:
            raise ReflexioMcpError(
                f"not stored: {err}; and the outbox cannot keep the publish for later "
                f"({problem}): fix one of them, then publish again"
            ) from None
        return published.model_copy(
            update={
                "warnings": [
                    *published.warnings,
                    f"sent straight to Reflexio, without the outbox ({problem})",
                ]
            }
        )

    async def _replace_damaged_outbox(self, reason: str) -> None:
        async with self._opening:
            try:
                await self._outbox.replace_damaged(reason)  # it logs what it read back
            except StoreError as err:
                self._outbox_open = False
                self._outbox_problem = str(err)
                return
            self._outbox_problem = None

    async def publish_status(self, user_id: str, request_id: str) -> PublishStatus:
        entry: Entry | None = None
        if await self._open_outbox():
            entry = await self._outbox.entry(user_id, request_id)
        if entry is not None:
            return entry.publish_status()
        try:
            return await self._guarded(lambda: self._client.publish_status(user_id, request_id))
        except BACKEND_FAILURES as err:
            return PublishStatus(
                request_id=request_id,
                user_id=user_id,
                status="unknown",
                detail=f"no publish with request_id {request_id!r} for user {user_id!r} waits in "
                f"the outbox, and Reflexio cannot be asked whether it holds one ({err}); ask "
                "again once it answers",
            )

    # -- reads, through the breaker -----------------------------------------------------------

    async def _guarded(self, call: Callable[[], Awaitable[_T]]) -> _T:
        if self._breaker.is_open:
            raise self._breaker.fail_fast()
        try:
            result = await call()
        except BACKEND_FAILURES as err:
            self._breaker.failure(str(err))
            raise
        self._breaker.success()
        return result

    async def get_interactions(
        self, request: GetRequest, after: Keyset | None = None
    ) -> list[Interaction]:
        return await self._guarded(lambda: self._client.get_interactions(request, after))

    async def search_interactions(
        self, request: SearchRequest, among: Sequence[int] | None = None
    ) -> Matches:
        return await self._guarded(lambda: self._client.search_interactions(request, among))

    async def get_all_interactions(
        self, limit: int, after: Keyset | None = None
    ) -> list[Interaction]:
        return await self._guarded(lambda: self._client.get_all_interactions(limit, after))

    async def find_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        return await self._guarded(lambda: self._client.find_interaction(user_id, interaction_id))

    async def delete_interaction(self, user_id: str, interaction_id: int) -> Interaction:
        return await self._guarded(lambda: self._client.delete_interaction(user_id, interaction_id))

    async def session_interactions(
        self, user_id: str, session_id: str, top_k: int
    ) -> list[Interaction]:
        return await self._guarded(
            lambda: self._client.session_interactions(user_id, session_id, top_k)
        )

    async def session_neighbours(
        self, user_id: str, interactions: Sequence[Interaction], turns: int
    ) -> dict[int, list[Interaction]]:
        return await self._guarded(
            lambda: self._client.session_neighbours(user_id, interactions, turns)
        )

    async def sessions(self, user_id: str, *, offset: int, limit: int) -> SessionPage:
        return await self._guarded(
            lambda: self._client.sessions(user_id, offset=offset, limit=limit)
        )

    async def session_ids(self, user_id: str, prefix: str, limit: int) -> KnownIds:
        return await self._guarded(lambda: self._client.session_ids(user_id, prefix, limit))

    async def user_ids(self, prefix: str, limit: int) -> KnownIds:
        return await self._guarded(lambda: self._client.user_ids(prefix, limit))

    # -- telling of publishes delivered later ---------------------------------------------

    def watch_stored(self, listener: StoredListener) -> Callable[[], None]:
        token = object()
        self._stored_listeners[token] = listener

        def stop() -> None:
            self._stored_listeners.pop(token, None)

        return stop

    async def _delivered(self, row: Row) -> None:
        """A queued publish was delivered in the background: its turns are stored now."""
        for listener in list(self._stored_listeners.values()):
            try:
                await listener(row.user_id, row.session_id)
            except Exception:  # a listener's failure must not stop delivery
                logger.exception("a listener of delivered publishes failed")

    async def status(self, user_id: str, *, store_wide: bool = True) -> BackendStatus:
        if self._breaker.is_open:
            status = BackendStatus(
                backend="reflexio",
                location=self.url,
                reachable=False,
                learning=True,
                detail=str(self._breaker.fail_fast()),
            )
        else:
            status = await self._client.status(user_id)
        outbox = await self._outbox_status(None if store_wide else user_id)
        return status.model_copy(update={"outbox": outbox})

    async def _outbox_status(self, user_id: str | None = None) -> OutboxStatus:
        """The outbox's state; with `user_id`, its counts and errors are that user's only."""
        circuit = "open" if self._breaker.is_open else "closed"
        moved = len(self._outbox.moved_aside())
        # The salvage report names every user's request_ids and counts: the whole store's view.
        salvage = self._outbox.salvage if user_id is None else None
        if not await self._open_outbox():
            return OutboxStatus(
                path=str(self._outbox.path), available=False, waiting=0, waiting_bytes=0,
                failed=0, last_error=self._outbox_problem, circuit=circuit,
                damaged_files_moved_aside=moved, salvage=salvage,
            )  # fmt: skip
        try:
            stats = await self._outbox.stats(user_id)
        except StoreError as err:
            return OutboxStatus(
                path=str(self._outbox.path), available=False, waiting=0, waiting_bytes=0,
                failed=0, last_error=str(err), circuit=circuit, damaged_files_moved_aside=moved,
                salvage=salvage,
            )  # fmt: skip
        oldest = stats.oldest_queued_at
        return OutboxStatus(
            path=str(stats.path),
            available=True,
            waiting=stats.waiting,
            waiting_bytes=stats.waiting_bytes,
            oldest_age_seconds=None if oldest is None else round(time.time() - oldest, 3),
            failed=stats.failed,
            last_error=stats.last_error or (self._breaker.last_error if user_id is None else None),
            circuit=circuit,
            damaged_files_moved_aside=moved,
            salvage=salvage,
            waiting_for_other_urls=stats.other_targets,
        )

    async def _probe_while_open(self) -> None:
        """While the breaker is open, probe /health with growing, jittered pauses; close it
        (and wake the deliverer) when Reflexio answers."""
        while True:
            await self._breaker.wait_opened()
            attempt = 0
            while self._breaker.is_open:
                attempt += 1
                pause = full_jitter(attempt, defaults.PROBE_SECONDS, defaults.MAX_PROBE_SECONDS)
                await anyio.sleep(max(pause, 0.1))
                try:
                    await self._client.health()
                except ReflexioMcpError as err:
                    logger.debug("probe: %s", err)
                    continue
                self._breaker.success()
                self._deliverer.wake()
                logger.info("%s answers again; delivering what waits", self.description)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
