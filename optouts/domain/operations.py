"""What a caller can ask of an opt-out list: add, remove or check numbers.

Domain vocabulary, so it lives here; `optouts.providers.base` re-exports it for providers."""

from __future__ import annotations

import enum


class Operation(str, enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    CHECK = "check"
