"""Per-action request quotas, enforced as AWS does: a token bucket per action, and a
ThrottlingException for a request that finds the bucket empty."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

#: AWS's default quotas (requests per second) for the actions the emulator serves
#: ("Quotas for AWS End User Messaging SMS": DeleteOptedOutNumber 10, the others 1).
DEFAULT_RATES: dict[str, float] = {
    "PutOptedOutNumber": 1.0,
    "DeleteOptedOutNumber": 10.0,
    "DescribeOptedOutNumbers": 1.0,
    "DescribePhoneNumbers": 1.0,
}


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()


class Throttle:
    """`rates` maps an action to its requests per second (0 or absent: unlimited). The
    burst defaults to max(2, rate): a caller pacing itself at the quota is never refused
    because of a few milliseconds of scheduling jitter, while one that bursts is."""

    def __init__(self, rates: Mapping[str, float] | None = None, *, burst: Mapping[str, float] | None = None) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self.configure(rates or {}, burst=burst)

    def configure(self, rates: Mapping[str, float], *, burst: Mapping[str, float] | None = None) -> None:
        with self._lock:
            self._buckets = {
                action: _Bucket(rate, (burst or {}).get(action, max(2.0, rate)))
                for action, rate in rates.items() if rate > 0
            }

    def admit(self, action: str) -> bool:
        with self._lock:
            bucket = self._buckets.get(action)
            if bucket is None:
                return True
            now = time.monotonic()
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.updated) * bucket.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            return False
