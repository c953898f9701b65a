"""Local ACS SMS opt-out emulator (development and tests only; never deployed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .faults import FaultConfig
from .server import SUPPORTED_API_VERSIONS, AcsEmulator

__all__ = ["SUPPORTED_API_VERSIONS", "AcsEmulator", "FaultConfig", "running_emulator"]


@contextmanager
def running_emulator(**options: Any) -> Iterator[AcsEmulator]:
    """`AcsEmulator(**options)`, started, and stopped on leaving the block."""
    with AcsEmulator(**options) as emulator:
        yield emulator
