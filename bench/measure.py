"""Small helpers shared by the benchmarks: timing, summaries and machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from devtools.azurite import azurite_version


@dataclass(frozen=True)
class Figure:
    """min/median/max of repeated wall-clock measurements, in seconds."""

    name: str
    runs: int
    min: float
    median: float
    max: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def ms(self) -> str:
        return f"{self.min * 1e3:.2f} / {self.median * 1e3:.2f} / {self.max * 1e3:.2f}"


def summarize(name: str, samples: list[float]) -> Figure:
    return Figure(name, len(samples), min(samples), statistics.median(samples), max(samples))


def time_call(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleaved(runs: int, candidates: dict[str, Callable[[], object]], warmup: int = 3) -> dict[str, Figure]:
    """Time each candidate `runs` times, alternating between them so that machine noise
    hits all of them alike (side by side in one run)."""
    for function in candidates.values():
        for _ in range(warmup):
            function()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, function in candidates.items():
            samples[name].append(time_call(function))
    return {name: summarize(name, values) for name, values in samples.items()}


def machine() -> dict[str, object]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "azurite": azurite_version(),
    }
