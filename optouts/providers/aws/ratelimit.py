"""A client-side rate limiter per AWS action.

AWS meters each action of the SMS and Voice v2 API separately (10 requests per second
for DeleteOptedOutNumber, 1 for the others by default) and answers ThrottlingException
beyond that. The gateway paces itself below the quota instead of finding it by being
throttled: call slots are handed out at most `rate` per second, in order, across all
threads of the process. botocore's adaptive retry mode stays underneath for what pacing
cannot know (other clients of the same account, a lowered quota).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


class RateLimiter:
    """Slots `1/rate` seconds apart; no burst, so a caller never exceeds the rate even briefly."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for the next slot; False (and no slot taken) if it starts after `deadline`."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            if deadline is not None and slot > deadline:
                return False
            self._next = slot + self._interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return True

    def estimate(self, calls: int) -> float:
        """Seconds from now until `calls` more calls could all have started."""
        if calls <= 0:
            return 0.0
        with self._lock:
            backlog = max(0.0, self._next - self._clock())
        return backlog + (calls - 1) * self._interval


class RateLimits:
    """One `RateLimiter` per action."""

    def __init__(self, rates: Mapping[str, float], **options: Callable[..., object]) -> None:
        self._limiters = {action: RateLimiter(rate, **options) for action, rate in rates.items()}  # type: ignore[arg-type]

    def __getitem__(self, action: str) -> RateLimiter:
        return self._limiters[action]

    def rate(self, action: str) -> float:
        return self._limiters[action].rate
