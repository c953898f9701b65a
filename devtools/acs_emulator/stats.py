"""Call counters, so tests can prove what a client sent and how concurrently."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

OPERATIONS = ("add", "remove", "check")


class CallStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls = 0
            self._by_status: Counter[int] = Counter()
            self._recipients: Counter[str] = Counter()
            # Calls still running keep counting as in flight; a reset only clears history.
            self._max_in_flight = self._in_flight

    def enter(self) -> None:
        with self._lock:
            self._calls += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def leave(self, status: int | None) -> None:
        """`status` None: the caller hung up before it could be answered."""
        with self._lock:
            self._in_flight -= 1
            if status is not None:
                self._by_status[status] += 1

    def count_recipients(self, operation: str, count: int) -> None:
        with self._lock:
            self._recipients[operation] += count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total_calls": self._calls,
                "by_status": dict(self._by_status),
                "recipients": {operation: self._recipients.get(operation, 0) for operation in OPERATIONS},
                "max_concurrent": self._max_in_flight,
            }
