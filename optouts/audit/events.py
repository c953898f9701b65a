"""Change events: one CloudEvents 1.0 event per effective change, built from the journal.

An effective change is a number whose outcome is `succeeded` in an `add` (the number is now
opted out) or a `remove` (opted back in) operation, whatever the channel: `http`, `queue`, or an
end user's own keyword (recorded by the trail as an ordinary add or remove). Checks, and numbers
whose outcome is `invalid`, `failed` or `unknown`, change nothing the trail can vouch for: no event.

The indexer (optouts.audit.index) emits them once an operation's outcome is in the history, so
nothing is added to the answer's latency, and a redelivered index message emits the same events
again: delivery is at least once. Each event's `id` is derived from the operation and the number,
so every emission of one change carries the same id and consumers deduplicate on (`source`, `id`).
docs/change-events.md has the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from optouts.audit.trail import OperationIntent, OperationOutcome, number_hash
from optouts.domain.phone import mask

SPEC_VERSION = "1.0"
#: The CloudEvents `source`: the gateway. Fixed, so that (source, id) identifies a change everywhere.
EVENT_SOURCE = "/optouts"
#: The new state, by the action that made it.
STATES = {"add": "optedOut", "remove": "optedIn"}
#: The CloudEvents `type`, by the new state: Event Grid subscriptions filter on it.
EVENT_TYPES = {"optedOut": "optouts.number.optedOut", "optedIn": "optouts.number.optedIn"}
DATA_CONTENT_TYPE = "application/json"

_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    id: str
    type: str
    subject: str
    time: datetime
    #: The CloudEvents `sequence` extension: orders one number's events as its history does.
    sequence: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The event in CloudEvents' JSON format (structured mode): a queue message's text."""
        return {
            "specversion": SPEC_VERSION, "id": self.id, "source": EVENT_SOURCE, "type": self.type,
            "subject": self.subject, "time": _iso(self.time), "datacontenttype": DATA_CONTENT_TYPE,
            "sequence": self.sequence, "data": self.data,
        }


def event_id(operation_id: str, sender: str, phone_number: str) -> str:
    """The same for every emission of one change: the operation, then a digest of the list and
    the number (the number itself stays out of an id that consumers log)."""
    return f"{operation_id}-{number_hash(sender, phone_number)[:24]}"


def sequence(accepted_at: datetime, operation_id: str) -> str:
    """Sorts as text in the order the history shows (oldest first here): .NET ticks of the time the
    operation was accepted, then its id for operations accepted in the same microsecond."""
    ticks = (accepted_at - _TICKS_EPOCH) // _ONE_MICROSECOND * 10
    return f"{ticks:019d}-{operation_id}"


def change_events(intent: OperationIntent, outcome: OperationOutcome | None) -> list[ChangeEvent]:
    """The operation's effective changes; none without a recorded outcome."""
    state = STATES.get(intent.action)
    if outcome is None or state is None:
        return []
    c = intent.context
    order = sequence(intent.accepted_at, intent.operation_id)
    return [
        ChangeEvent(
            id=event_id(intent.operation_id, intent.sender, number),
            type=EVENT_TYPES[state],
            subject=f"senders/{intent.sender}",
            time=intent.accepted_at,
            sequence=order,
            data={
                "sender": intent.sender,
                "phoneNumber": number,
                "maskedPhoneNumber": mask(number),
                "state": state,
                "optedOut": state == "optedOut",
                "action": intent.action,
                "channel": c.channel,
                # The end user's own STOP/START (a keyword), not a change the company made.
                "endUser": c.end_user,
                "operationId": intent.operation_id,
                "occurredAt": _iso(intent.accepted_at),
                "completedAt": _iso(outcome.completed_at),
                "correlationId": c.correlation_id,
                "provider": intent.provider,
            },
        )
        for number, result in zip(intent.numbers, outcome.outcomes, strict=False)
        if result.status == "succeeded"
    ]


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
