"""Waiting politely: backoff with full jitter, and a pace under a backend's rate limit."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

_jitter = random.Random()
"""Our own generator: waits do not depend on (or disturb) the global random state."""


def full_jitter(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): uniform in [0, first *
    2**(attempt-1)], capped. Full jitter: many clients retrying do not retry in step."""
    return _jitter.uniform(0, min(cap, first * 2 ** max(attempt - 1, 0)))


class Pacer:
    """A token bucket: at most `per_minute` sends a minute on average, up to a minute's worth
    at once. `per_minute` 0 means no pacing. After the backend says "too many" (`pause`),
    nothing is sent until the pause ends."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._tokens = float(per_minute)
        self._updated = clock()
        self._paused_until = 0.0

    def take(self) -> bool:
        """Take one send's worth if there is one now."""
        if self.wait_seconds() > 0:
            return False
        if self.per_minute:
            self._tokens -= 1
        return True

    def give_back(self) -> None:
        """Return a token taken for a send that did not happen."""
        if self.per_minute:
            self._tokens = min(self._tokens + 1, float(self.per_minute))

    def wait_seconds(self) -> float:
        """How long until a send may go."""
        now = self._clock()
        paused = max(0.0, self._paused_until - now)
        if not self.per_minute:
            return paused
        self._tokens = min(
            float(self.per_minute), self._tokens + (now - self._updated) * self.per_minute / 60
        )
        self._updated = now
        short = max(0.0, 1 - self._tokens) * 60 / self.per_minute
        return max(paused, short)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
