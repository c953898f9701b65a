"""The upstream faults the hardening tests inject, and the numbers they use."""

from __future__ import annotations

from devtools.acs_emulator import FaultConfig

#: Transient faults only: every one of them must end in `succeeded` given retries.
#: 20% per-recipient 500s, 10% whole-call 429 with Retry-After, 5% whole-call 503, 5% latency spikes.
TRANSIENT_FAULTS = FaultConfig(
    recipient_error_rate=0.20,
    throttle_rate=0.10,
    retry_after_seconds=0.2,
    server_error_rate=0.05,
    server_error_status=503,
    latency_spike_rate=0.05,
    latency_spike_seconds=0.3,
    seed=2026,
)

#: What a number may end as when ACS only had transient trouble.
TRANSIENT_ERROR_CODES = frozenset({"AcsThrottled", "AcsUnavailable"})


def distinct_numbers(area_code: int, count: int) -> list[str]:
    """`count` distinct possible US numbers in one area code (count <= 10,000)."""
    assert count <= 10_000
    return [f"+1{area_code}{5550000 + n}" for n in range(count)]
