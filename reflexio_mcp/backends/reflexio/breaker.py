"""Stop calling a backend that keeps failing, until a probe says it answers again."""

from __future__ import annotations

import logging
import time

import anyio

from reflexio_mcp.core import defaults
from reflexio_mcp.core.errors import BackendUnreachable

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """Closed: calls go through. After `failures_to_open` failures in a row it opens: calls
    fail fast (reads) or go straight to the outbox (publishes) until `success()` closes it,
    which a probe does once the backend answers."""

    def __init__(self, backend: str, failures_to_open: int = defaults.FAILURES_TO_OPEN) -> None:
        self._backend = backend
        self._failures_to_open = failures_to_open
        self.failures = 0
        self.last_error: str | None = None
        self.opened_at: float | None = None
        self._closed = anyio.Event()
        self._closed.set()
        self._opened = anyio.Event()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.failures < self._failures_to_open or self.opened_at is not None:
            return
        self.opened_at = time.time()
        self._closed = anyio.Event()
        self._opened.set()
        logger.warning(
            "%s failed %d times in a row (%s): reads fail fast and publishes are queued until "
            "it answers again",
            self._backend,
            self.failures,
            error,
        )

    def success(self) -> None:
        self.failures = 0
        self.last_error = None
        if self.opened_at is not None:
            self.opened_at = None
            self._opened = anyio.Event()
            self._closed.set()

    def fail_fast(self) -> BackendUnreachable:
        """The error a call meets while the breaker is open: the backend's last failure."""
        return BackendUnreachable(
            f"{self.last_error} (reflexio-mcp stopped calling it after {self.failures} failures "
            "in a row and checks every few seconds whether it is back; publishes are kept in the "
            "outbox meanwhile)"
        )

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def wait_opened(self) -> None:
        await self._opened.wait()
