"""The use-case: an SMS the end user sent to one of the gateway's numbers, as ACS's
`Microsoft.Communication.SMSReceived` event (Event Grid or CloudEvents schema).

ACS opts the number out by itself when the whole message is STOP (or another opt-out keyword), and
back in on START or UNSTOP, and tells no one. Such a message becomes an audit record (channel
`keyword`, `endUser: true`) with the message id and the time ACS received it; the gateway does not
call ACS, which has already made the change. Any other message is dropped unread beyond the keyword
test and never stored or logged: it is personal data.

The event's `to` is the gateway's number (the sender whose list changed) and its `from` the end user.
An event that claims to be SMSReceived but does not hold one raises `MalformedSmsEvent`, and a
record that cannot be written raises `AuditUnavailable`: either way the webhook answers with an
error, so Event Grid delivers the event again and finally dead-letters it, never losing it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from optouts.audit.trail import AuditReceipt, AuditTrail, EndUserChange
from optouts.config import comparable_sender, sender_problem
from optouts.domain.keywords import match_keyword
from optouts.domain.phone import is_e164, mask

_logger = logging.getLogger(__name__)

SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
#: ACS's message ids are letters, digits, `_` and `-` (`Incoming_2020…-3341-…`); kept bounded.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: The longest SMS ACS delivers is a few thousand characters; anything far longer is not an SMS.
MAX_MESSAGE_CHARS = 64 * 1024


class MalformedSmsEvent(ValueError):
    """An SMSReceived event without what every SMSReceived event holds. The text names the
    field, never its value."""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One event as the Event Grid trigger gives it, in either schema (the blueprint's adapter)."""

    event_id: str
    event_type: str
    data: Any
    #: The envelope's time (`eventTime` or `time`); the SMS's own `receivedTimestamp` wins.
    event_time: datetime | None = None
    schema: str = "eventgrid"  # eventgrid | cloudevents


@dataclass(frozen=True, slots=True)
class KeywordResult:
    #: recorded | not-a-keyword | other-event | disabled
    outcome: str
    receipt: AuditReceipt | None = None


class EndUserKeywords:
    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    def handle(self, event: InboundEvent) -> KeywordResult:
        try:
            return self._handle(event)
        except MalformedSmsEvent as malformed:
            # The text names the field, never its value.
            _logger.warning("end-user keywords: a malformed SMSReceived event (%s) was refused; Event Grid will "
                            "deliver it again, then dead-letter it", malformed)
            raise

    def _handle(self, event: InboundEvent) -> KeywordResult:
        if event.event_type != SMS_RECEIVED:
            # A subscription filtered to SMSReceived sends nothing else; delivery reports and the like
            # are not this function's, and are acknowledged as such.
            _logger.info("end-user keywords: an event of another type was ignored")
            return KeywordResult("other-event")
        data = event.data
        if not isinstance(data, Mapping):
            raise MalformedSmsEvent("data is not an object")
        message = data.get("message")
        if not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS:
            raise MalformedSmsEvent("data.message is not a string of at most 64 KiB")
        keyword = match_keyword(message)  # bounded: a message longer than any keyword is not read
        if keyword is None:
            return KeywordResult("not-a-keyword")
        change = EndUserChange(
            message_id=_message_id(data.get("messageId")),
            received_at=_received_at(data.get("receivedTimestamp"), event.event_time),
            action=keyword.effect.value,
            sender=_sender(data.get("to")),
            phone_number=_end_user(data.get("from")),
            keyword=keyword.word,
        )
        receipt = self._trail.record_end_user_change(change)
        if receipt.status == "disabled":
            _logger.warning("end-user keywords: %s from %s to %s not recorded: the audit trail is disabled (%s)",
                            keyword.word, mask(change.phone_number), change.sender, receipt.disabled_reason)
            return KeywordResult("disabled", receipt)
        _logger.info("end-user keywords: %s from %s to %s recorded as operation %s", keyword.word,
                     mask(change.phone_number), change.sender, receipt.operation_id)
        return KeywordResult("recorded", receipt)

    def close(self) -> None:
        self._trail.close()


def _message_id(value: object) -> str:
    if not isinstance(value, str) or not _MESSAGE_ID.fullmatch(value):
        raise MalformedSmsEvent("data.messageId is not 1 to 128 of A-Z a-z 0-9 _ . : -")
    return value


def _sender(value: object) -> str:
    if not isinstance(value, str) or len(value) > 32 or sender_problem(value):
        raise MalformedSmsEvent("data.to is not a phone number in E.164 or a short code")
    return comparable_sender(value)


def _end_user(value: object) -> str:
    if not isinstance(value, str) or not is_e164(value.strip()):
        raise MalformedSmsEvent("data.from is not a phone number in E.164")
    return value.strip()


def _received_at(value: object, event_time: datetime | None) -> datetime:
    if value is None:
        if event_time is None:
            raise MalformedSmsEvent("the event has neither data.receivedTimestamp nor a time")
        return _utc(event_time)
    if not isinstance(value, str) or len(value) > 64:
        raise MalformedSmsEvent("data.receivedTimestamp is not a timestamp")
    try:
        # ACS writes seven fractional digits (.NET ticks); Python reads six at most.
        text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedSmsEvent("data.receivedTimestamp is not a timestamp") from None
    return _utc(parsed)


def _utc(instant: datetime) -> datetime:
    # A time without an offset is read as UTC, as Event Grid writes every time.
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
