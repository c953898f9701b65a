"""Fault injection: what to inject (FaultConfig) and a seeded, lock-guarded dice box."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

_RATES = ("latency_spike_rate", "throttle_rate", "server_error_rate", "recipient_error_rate")
_DURATIONS = ("latency_seconds", "latency_spike_seconds", "retry_after_seconds", "hang_seconds")

#: The per-recipient failures ACS reports with a 200 answer, and the message each comes with.
RECIPIENT_ERROR_MESSAGES = {
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class FaultConfig:
    latency_seconds: float = 0.0
    latency_spike_rate: float = 0.0
    latency_spike_seconds: float = 0.0
    throttle_rate: float = 0.0
    retry_after_seconds: float = 1.0
    server_error_rate: float = 0.0
    server_error_status: int = 503
    recipient_error_rate: float = 0.0
    #: A failed recipient gets one of these statuses, drawn with the same seeded dice.
    recipient_error_statuses: tuple[int, ...] = (500,)
    hang_seconds: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        # Caught here so a typo in a test fails loudly instead of silently injecting nothing.
        for name in _RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in _DURATIONS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 500 <= self.server_error_status <= 599:
            raise ValueError("server_error_status must be a 5xx status")
        self.recipient_error_statuses = tuple(self.recipient_error_statuses)
        if not self.recipient_error_statuses:
            raise ValueError("recipient_error_statuses must name at least one status")
        for status in self.recipient_error_statuses:
            if status not in RECIPIENT_ERROR_MESSAGES:
                raise ValueError(
                    f"recipient_error_statuses may hold only {', '.join(map(str, RECIPIENT_ERROR_MESSAGES))}"
                )

    def retry_after_headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(math.ceil(self.retry_after_seconds)),
            "retry-after-ms": str(math.ceil(self.retry_after_seconds * 1000)),
        }


@dataclass(frozen=True)
class CallFaults:
    """The faults drawn for one call, in the order they are applied."""

    config: FaultConfig
    delay_seconds: float
    throttle: bool
    server_error: bool


class FaultDice:
    """One random.Random(seed) per configuration, so a seed replays the same faults."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._random = random.Random(config.seed)

    @property
    def config(self) -> FaultConfig:
        return self._config

    def reconfigure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._random = random.Random(config.seed)

    def draw_call(self) -> CallFaults:
        with self._lock:
            config, rng = self._config, self._random
            spike = rng.random() < config.latency_spike_rate
            throttle = rng.random() < config.throttle_rate
            server_error = rng.random() < config.server_error_rate
        delay = config.hang_seconds + config.latency_seconds + (config.latency_spike_seconds if spike else 0.0)
        return CallFaults(config, delay, throttle, server_error)

    def draw_recipient_errors(self, count: int) -> list[int | None]:
        """For each of `count` recipients, the injected per-recipient status, or None."""
        with self._lock:
            config, rng = self._config, self._random
            statuses = config.recipient_error_statuses
            drawn: list[int | None] = []
            for _ in range(count):
                failed = rng.random() < config.recipient_error_rate
                # A second draw only when there is a choice, so a one-status config replays
                # exactly the sequence it did before statuses could be chosen.
                drawn.append((statuses[0] if len(statuses) == 1 else rng.choice(statuses)) if failed else None)
            return drawn
