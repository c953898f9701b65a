"""Typed results of opt-out operations."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Operation(str, enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    CHECK = "check"


class RecipientOutcome(str, enum.Enum):
    SUCCEEDED = "succeeded"
    #: ACS answered the recipient with a final 4xx (for example a malformed number).
    REJECTED = "rejected"
    #: Still failing transiently (429/5xx, no answer) when retries or the time budget ran out.
    FAILED = "failed"


# Not frozen: one is built per number (10,000 in a bulk call), and a frozen dataclass's
# __init__ costs three times as much. Nothing changes them after construction.
@dataclass(slots=True)
class RecipientResult:
    to: str
    outcome: RecipientOutcome
    #: The per-recipient status ACS reported, or the whole call's status when the call failed.
    #: None when no HTTP answer was received at all (connection error, time budget).
    status_code: int | None
    error_message: str | None = None
    #: Only for check: whether the number is on the opt-out list.
    is_opted_out: bool | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome is RecipientOutcome.SUCCEEDED
