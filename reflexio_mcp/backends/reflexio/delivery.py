"""Sending the outbox's rows to Reflexio: one attempt, then the row's fate recorded.

`Deliverer.send` makes one attempt for one claimed row and records how it ended; the publish
tool calls it for a row it may send at once, and `Deliverer.run` (a background task) calls it
for every row that waits, oldest first within each session, paced under Reflexio's rate limit.
Every attempt is a plain publish (never wait_for_response: waiting for learning happens after
delivery, outside the lane), bounded by its timeout.

    2xx, or "already exists" for this user's request_id   delivered
    400 / 401 / 403 / 422 / another user's request_id      failed (kept, with the reason)
    no connection, not Reflexio                            waits; counts toward the breaker
    no answer in time                                      see below
    429                                                    waits; sending pauses (backoff)
    5xx, success=false                                     see below (backoff); failed after
                                                           MAX_SERVER_ERRORS row errors

No answer in time, or a 5xx, is either the backend's fault or the row's, and only the row's
counts toward failing it. It is the row's when Reflexio took other publishes between two of
this row's unanswered (or failed) attempts: Reflexio answers, just not this publish. Then it is
a row error (not a breaker failure): an unanswered row waits `attempt_seconds` times its row
errors (so it holds the lane a shrinking share of the time) and is failed with the reason after
MAX_UNANSWERED row errors; a 5xx row backs off and is failed after MAX_SERVER_ERRORS.
Otherwise (nothing else was taken meanwhile: Reflexio may be down, stuck or failing for
everyone) it waits and counts toward the breaker, as no connection does: an outage never
fails a row. The evidence is kept in memory, so a restarted process gathers it afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio

from reflexio_mcp.backends.reflexio.api import ReflexioApi
from reflexio_mcp.backends.reflexio.breaker import CircuitBreaker
from reflexio_mcp.backends.reflexio.outbox import Outbox, Row
from reflexio_mcp.core import defaults
from reflexio_mcp.core.errors import (
    AuthError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    InvalidInput,
    NotReflexio,
    RateLimited,
    ReflexioMcpError,
    StoreError,
)
from reflexio_mcp.core.models import Published
from reflexio_mcp.core.pacing import Pacer, full_jitter

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

LEASE_MARGIN_SECONDS = 30.0
"""A claim outlasts its attempt's timeout by this much."""
POLL_SECONDS = 5.0
"""With nothing due, look again this often (rows another process left, leases run out)."""
MAX_BACKOFF_SECONDS = 60.0
RATE_LIMITED_MAX_PAUSE_SECONDS = 15.0
"""After a 429 without Retry-After, sending pauses at most this long: Reflexio's limiter
counts in fixed one-minute windows, and a longer pause would sleep past the window's reset."""
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 410, 413, 415, 422})


@dataclass(frozen=True)
class Sent:
    """How one attempt at a row ended."""

    state: Literal["delivered", "queued", "failed"]
    published: Published | None = None
    error: ReflexioMcpError | None = None
    """Why it is still queued, or why it failed."""


class Deliverer:
    def __init__(
        self,
        client: ReflexioApi,
        outbox: Outbox,
        breaker: CircuitBreaker,
        pacer: Pacer,
        *,
        attempt_seconds: float,
        max_server_errors: int = defaults.MAX_SERVER_ERRORS,
        max_unanswered: int = defaults.MAX_UNANSWERED,
        on_delivered: Callable[[Row], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._breaker = breaker
        self._pacer = pacer
        self._attempt_seconds = attempt_seconds
        self._max_server_errors = max_server_errors
        self._max_unanswered = max_unanswered
        self._on_delivered = on_delivered
        """Told of each row `run` delivers (the publish that queued it was answered then)."""
        self._rate_limited = 0
        self._taken = 0
        """Publishes Reflexio took, in this process (the evidence that it answers)."""
        self._missed_at: dict[int, int] = {}
        """seq -> `_taken` when that row's last attempt went unanswered or failed (5xx)."""
        self._wake = anyio.Event()
        self._turn = anyio.Lock()
        """One publish in flight at a time: Reflexio 0.2.32 can lock up for good (its SQLite
        calls stuck) under concurrent publishes, which an HTTP server with many clients makes."""

    def lease(self, timeout: float) -> float:
        return timeout + LEASE_MARGIN_SECONDS

    def wake(self) -> None:
        """Look for due rows now (one was queued, or the backend came back)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver queued rows until cancelled."""
        while True:
            if self._breaker.is_open:
                await self._breaker.wait_closed()
                continue
            pause = self._pacer.wait_seconds()
            if pause > 0:
                await anyio.sleep(pause)
                continue
            try:
                row = await self._outbox.claim_next(self.lease(self._attempt_seconds))
                due = None if row is not None else await self._outbox.next_due()
            except StoreError as err:
                logger.warning("cannot read the outbox to deliver from it: %s", err)
                await self._idle(POLL_SECONDS)
                continue
            if row is None:
                await self._idle(POLL_SECONDS if due is None else due - time.time())
                continue
            self._pacer.take()
            sent = await self.send(row, seconds=self._attempt_seconds)
            if sent.state == "delivered":
                logger.debug("delivered %s (attempt %d)", row.request_id, row.attempts)
                if self._on_delivered is not None:
                    await self._on_delivered(row)
            elif sent.state == "failed":
                logger.warning(
                    "Reflexio will not take publish %s of user %r; kept in the outbox as "
                    "failed: %s",
                    row.request_id,
                    row.user_id,
                    sent.error,
                )

    async def _idle(self, seconds: float) -> None:
        with anyio.move_on_after(min(max(seconds, 0.0), POLL_SECONDS)):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def send(self, row: Row, *, seconds: float, lane_seconds: float | None = None) -> Sent:
        """One attempt at a row this process has claimed, after waiting at most `lane_seconds`
        (default `seconds`) for the lane; its outcome is written to the outbox (best effort: a
        row whose outcome cannot be written stays claimed until its lease ends, then is sent
        again and answered "already exists")."""
        lane_seconds = seconds if lane_seconds is None else lane_seconds
        took_turn = False
        with anyio.move_on_after(lane_seconds):
            await self._turn.acquire()
            took_turn = True
        if not took_turn:
            busy = BackendTimeout(
                f"another publish to {self._client.description} was still under way after "
                f"{lane_seconds:g} s"
            )
            return await self._later(row, busy, after=0)
        try:
            return await self._attempt(row, seconds=seconds)
        finally:
            self._turn.release()

    async def _attempt(self, row: Row, *, seconds: float) -> Sent:
        try:
            with anyio.fail_after(seconds):  # the whole attempt, connection included
                published = await self._client.send_publish(
                    row.body,
                    row.user_id,
                    row.request_id,
                    wait_for_response=False,
                    read_seconds=seconds,
                    retries=0,
                )
        except TimeoutError:
            return await self._unanswered(row, self._overdue(seconds))
        except BackendTimeout as err:
            return await self._unanswered(row, err)
        except (InvalidInput, AuthError) as err:
            return await self._failed(row, err)
        except RateLimited as err:
            self._rate_limited += 1
            wait = max(
                err.retry_after or 0.0,
                full_jitter(self._rate_limited, 1.0, RATE_LIMITED_MAX_PAUSE_SECONDS),
            )
            self._pacer.pause(wait)
            return await self._later(row, err, after=wait)
        except (BackendUnreachable, NotReflexio) as err:
            return await self._unreachable(row, err)
        except BackendStatusError as err:
            if err.status_code in PERMANENT_STATUSES:
                return await self._failed(row, err)
            return await self._server_error(row, err)
        self._breaker.success()
        self._rate_limited = 0
        self._taken += 1
        return await self._delivered(row, published)

    async def _delivered(self, row: Row, published: Published) -> Sent:
        self._missed_at.pop(row.seq, None)
        await self._record(self._outbox.delivered(row.seq), row)
        return Sent("delivered", published=published)

    async def _reflexio_holds(self, row: Row) -> bool:
        """Whether Reflexio stored the row after all: an attempt past its time may still have
        been taken, and a row failed then would be published again by hand, stored twice."""
        try:
            with anyio.fail_after(self._attempt_seconds):
                status = await self._client.publish_status(row.user_id, row.request_id)
        except (TimeoutError, ReflexioMcpError):
            return False
        return status.status == "delivered"

    def _the_rows_fault(self, row: Row) -> bool:
        """Whether Reflexio took other publishes since this row's last attempt went unanswered
        or failed: then this one failing too is the row's fault (module docstring)."""
        before = self._missed_at.get(row.seq)
        self._missed_at[row.seq] = self._taken
        return before is not None and before != self._taken

    async def _server_error(self, row: Row, err: BackendStatusError) -> Sent:
        """A 5xx (or success=false): a row error only while Reflexio takes other publishes;
        otherwise the backend's failure (it fails everything), which fails no row."""
        if not self._the_rows_fault(row):
            return await self._unreachable(row, err, at_least=err.retry_after or 0.0)
        reason = ReflexioMcpError(
            f"{err} (attempt {row.attempts}; Reflexio took other publishes meanwhile, so this "
            f"publish is the problem: after {self._max_server_errors} such failures it is kept "
            "as failed; `reflexio-mcp outbox --retry-failed` sends it again)"
        )
        wait = max(
            err.retry_after or 0.0, full_jitter(row.server_errors + 1, 1.0, MAX_BACKOFF_SECONDS)
        )
        return await self._row_error(row, reason, after=wait, limit=self._max_server_errors)

    async def _unanswered(self, row: Row, err: BackendTimeout) -> Sent:
        """No answer in time: the row's fault only if Reflexio took other publishes since this
        row last went unanswered (module docstring)."""
        if not self._the_rows_fault(row):
            return await self._unreachable(row, err)
        errors = row.server_errors + 1
        if errors >= self._max_unanswered and await self._reflexio_holds(row):
            return await self._delivered(row, Published(message="stored by an unanswered attempt"))
        reason = ReflexioMcpError(
            f"{err} (attempt {row.attempts}; Reflexio took other publishes meanwhile, so this "
            f"publish is the problem: after {self._max_unanswered} such attempts it is kept as "
            "failed; `reflexio-mcp outbox --retry-failed` sends it again)"
        )
        return await self._row_error(
            row, reason, after=self._attempt_seconds * errors, limit=self._max_unanswered
        )

    async def release(self, row: Row, reason: str) -> None:
        """Give back a claimed row whose attempt was cut short on this side (the call was
        cancelled): it waits and is sent again at once. Not a backend failure."""
        await self._later(row, ReflexioMcpError(reason), after=0)

    async def _unreachable(self, row: Row, err: ReflexioMcpError, *, at_least: float = 0.0) -> Sent:
        """The backend's failure (no connection, no answer in time, failing every publish):
        the row waits, at least `at_least`, and the failure counts toward the breaker."""
        self._breaker.failure(str(err))
        wait = max(at_least, full_jitter(self._breaker.failures, 0.5, MAX_BACKOFF_SECONDS))
        return await self._later(row, err, after=wait)

    def _overdue(self, seconds: float) -> BackendTimeout:
        return BackendTimeout(
            f"{self._client.description} did not answer the publish within {seconds:g} s; it "
            "may be busy or stuck"
        )

    async def _failed(self, row: Row, err: ReflexioMcpError) -> Sent:
        self._missed_at.pop(row.seq, None)
        await self._record(self._outbox.failed(row.seq, str(err)), row)
        return Sent("failed", error=err)

    async def _row_error(
        self, row: Row, err: ReflexioMcpError, *, after: float, limit: int
    ) -> Sent:
        """An attempt that failed because of this row: it waits, or is failed at `limit`."""
        failed = await self._record(
            self._outbox.row_error(row.seq, str(err), after=after, limit=limit), row
        )
        if not failed:
            return Sent("queued", error=err)
        self._missed_at.pop(row.seq, None)
        return Sent("failed", error=err)

    async def _later(self, row: Row, err: ReflexioMcpError, *, after: float) -> Sent:
        await self._record(self._outbox.retry_later(row.seq, str(err), after=after), row)
        return Sent("queued", error=err)

    async def _record(self, change: Awaitable[_T], row: Row) -> _T | None:
        try:
            return await change
        except StoreError as err:
            logger.warning(
                "could not record in the outbox how publish %s went (%s); it is sent again "
                "once its claim runs out, and Reflexio stores it once",
                row.request_id,
                err,
            )
