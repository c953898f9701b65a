"""The opt-out lists, one set of numbers per sender, optionally persisted to JSON."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path


class OptOutStore:
    def __init__(self, state_file: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._state_file = Path(state_file) if state_file else None
        self._lists: dict[str, set[str]] = {}
        if self._state_file is not None and self._state_file.exists():
            saved = json.loads(self._state_file.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError(f"{self._state_file} does not hold the emulator's state")
            self._lists = {sender: set(numbers) for sender, numbers in saved.items()}

    def numbers(self, sender: str) -> set[str]:
        with self._lock:
            return set(self._lists.get(sender, ()))

    def add(self, sender: str, numbers: Iterable[str]) -> None:
        with self._lock:
            self._lists.setdefault(sender, set()).update(numbers)
            self._persist_locked()

    def remove(self, sender: str, numbers: Iterable[str]) -> None:
        with self._lock:
            self._lists.get(sender, set()).difference_update(numbers)
            self._persist_locked()

    def contains(self, sender: str, numbers: Iterable[str]) -> list[bool]:
        with self._lock:
            opted_out = self._lists.get(sender, set())
            return [number in opted_out for number in numbers]

    def _persist_locked(self) -> None:
        if self._state_file is None:
            return
        # Write-then-rename: a crash mid-write never leaves a truncated state file.
        temporary = self._state_file.with_name(f"{self._state_file.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({s: sorted(n) for s, n in self._lists.items()}), encoding="utf-8")
        os.replace(temporary, self._state_file)
