"""What a caller asks for, validated: the same rules for HTTP bodies and queue messages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from optouts.config import Settings
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem, validation_problem

MAX_REASON_LENGTH = 500
MAX_CORRELATION_ID_LENGTH = 128
MAX_SENDER_LENGTH = 32

#: What a caller's correlationId may hold: it is echoed in results, kept in the audit trail and
#: may name things, so letters, digits and `. _ : -` only (GUIDs, ticket and item ids fit).
CORRELATION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
CORRELATION_ID_RULE = "1 to 128 characters: letters, digits, '.', '_', ':' or '-'"
_CORRELATION_ID = re.compile(CORRELATION_ID_PATTERN)
#: Free text (reason): any printable character, none that could end a log line or reorder text.
REASON_RULE = f"at most {MAX_REASON_LENGTH} printable characters, no line breaks or control characters"

_BODY_FIELDS = frozenset({"phoneNumbers", "sender", "region", "reason"})
# `traceparent` (W3C) lets a trace follow a queued request; optouts.telemetry validates it.
_MESSAGE_FIELDS = _BODY_FIELDS | {"action", "correlationId", "traceparent"}


@dataclass(frozen=True)
class OptOutCommand:
    action: Operation
    phone_numbers: tuple[str, ...]
    sender: str
    region: str
    reason: str | None = None
    correlation_id: str | None = None


def decode_json(body: bytes, *, max_bytes: int) -> Any:
    """Bytes to a JSON value, with every way it can go wrong as a 4xx `Problem`."""
    if len(body) > max_bytes:
        raise Problem(413, "BodyTooLarge", "Payload too large",
                      f"the body is larger than {max_bytes} bytes")
    if not body.strip():
        raise Problem(400, "EmptyBody", "Invalid request body", "the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(400, "InvalidEncoding", "Invalid request body", "the body is not valid UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise Problem(400, "InvalidJson", "Invalid request body", "the JSON is nested too deeply") from None
    except ValueError as error:
        raise Problem(400, "InvalidJson", "Invalid request body",
                      f"the body is not valid JSON ({_short(error)})") from None
    # JSON may escape a lone UTF-16 surrogate ("\\ud800"): valid syntax, but not text. Echoed
    # into an answer or a result message it cannot be encoded, so it is refused like bad UTF-8.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        raise Problem(400, "InvalidEncoding", "Invalid request body",
                      "the JSON escapes a lone UTF-16 surrogate, which is not a character")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):  # too deep to check is refused too
        return True
    return False


def parse_command(
    payload: Any, settings: Settings, *, action: Operation | None = None
) -> OptOutCommand:
    """Validate an HTTP body (`action` given by the route) or a queue message (`action` inside)."""
    if not isinstance(payload, Mapping):
        raise validation_problem({"$": ["the body must be a JSON object"]})
    allowed_fields = _BODY_FIELDS if action is not None else _MESSAGE_FIELDS
    errors: dict[str, list[str]] = {}
    for name in payload:
        if name not in allowed_fields:
            errors[str(name)[:64]] = [f"unknown field; expected one of {', '.join(sorted(allowed_fields))}"]

    if action is None:
        action = _parse_action(payload.get("action"), errors)
    numbers = _parse_phone_numbers(payload.get("phoneNumbers", _MISSING), settings, errors)
    sender = _optional_text(payload, "sender", MAX_SENDER_LENGTH, errors)
    region = _optional_text(payload, "region", 2, errors)
    reason = _optional_text(payload, "reason", MAX_REASON_LENGTH, errors)
    if reason is not None and not is_printable_text(reason):
        errors["reason"] = [f"must be {REASON_RULE}"]
    correlation_id = _correlation_id(payload.get("correlationId"), errors)
    if region is not None and not is_known_region(region):
        errors.setdefault("region", []).append("must be a two-letter ISO 3166 region code such as US or GB")
    if errors:
        raise validation_problem(errors)
    if numbers is _TOO_MANY:
        raise validation_problem(
            {"phoneNumbers": [f"at most {settings.max_numbers} phone numbers per request"]},
            status=413, code="TooManyPhoneNumbers",
        )
    assert action is not None and isinstance(numbers, tuple)  # nosec B101 - narrows types; errors raised above
    return OptOutCommand(
        action=action,
        phone_numbers=numbers,
        sender=resolve_sender(sender, settings),
        region=(region or settings.default_region).upper(),
        reason=reason,
        correlation_id=correlation_id,
    )


def resolve_sender(sender: str | None, settings: Settings) -> str:
    """The sender to act for: the caller's (normalized) or the default; 403 when not allowed."""
    if sender is None:
        if settings.default_sender is None:
            raise validation_problem({"sender": ["is required: no OPTOUT_DEFAULT_SENDER is configured"]})
        sender = settings.default_sender
    sender = _normalize_sender(sender)
    if sender not in _comparable_senders(settings.allowed_senders):
        raise Problem(403, "SenderNotAllowed", "Sender not allowed",
                      "this gateway may not manage the opt-out list of that sender")
    return sender


@lru_cache(maxsize=8)
def _comparable_senders(allowed_senders: frozenset[str]) -> frozenset[str]:
    return frozenset(_normalize_sender(allowed) for allowed in allowed_senders)


def _normalize_sender(sender: str) -> str:
    """Toll-free and 10DLC senders compare as E.164; short codes and other ids as written."""
    compact = "".join(c for c in sender if c not in " -().")
    if compact.startswith("+") and compact[1:].isdigit():
        return compact
    return sender.strip()


_MISSING = object()
_TOO_MANY = object()


def _parse_action(value: Any, errors: dict[str, list[str]]) -> Operation | None:
    if value is None:
        errors["action"] = ["is required: one of add, remove, check"]
        return None
    if isinstance(value, str):
        try:
            return Operation(value.strip().lower())
        except ValueError:
            pass
    errors["action"] = ["must be one of add, remove, check"]
    return None


def _parse_phone_numbers(value: Any, settings: Settings, errors: dict[str, list[str]]) -> object:
    if value is _MISSING or value is None:
        errors["phoneNumbers"] = ["is required: a list of phone numbers"]
        return None
    if not isinstance(value, list):
        errors["phoneNumbers"] = ["must be a list of strings"]
        return None
    if not value:
        errors["phoneNumbers"] = ["must contain at least one phone number"]
        return None
    if len(value) > settings.max_numbers:
        return _TOO_MANY
    wrong_types = _indexes_of_non_strings(value)
    for index in wrong_types:
        errors[f"phoneNumbers[{index}]"] = ["must be a string"]
    return None if wrong_types else tuple(value)


def _indexes_of_non_strings(values: Iterable[Any]) -> list[int]:
    return [index for index, item in enumerate(values) if not isinstance(item, str)]


def _optional_text(payload: Mapping[str, Any], name: str, max_length: int, errors: dict[str, list[str]]) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors[name] = ["must be a string"]
        return None
    value = value.strip()
    if len(value) > max_length:
        errors[name] = [f"must be at most {max_length} characters"]
        return None
    return value or None


def _correlation_id(value: Any, errors: dict[str, list[str]]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors["correlationId"] = ["must be a string"]
        return None
    text = value.strip()
    if not text:
        return None
    if not is_valid_identifier(text):
        errors["correlationId"] = [f"must be {CORRELATION_ID_RULE}"]
        return None
    return text


def is_valid_identifier(value: object) -> bool:
    """True for a correlationId (or a message id) within the documented charset and length."""
    return isinstance(value, str) and _CORRELATION_ID.match(value) is not None and not value.endswith("\n")


def is_printable_text(value: str) -> bool:
    # str.isprintable() is False for every control, format (bidi overrides, zero-width) and
    # separator character except the plain space: exactly what must not reach a record or a log.
    return value.isprintable()


def is_known_region(region: str) -> bool:
    import phonenumbers  # deferred: a heavy import that cold start does not need

    return region.upper() in phonenumbers.SUPPORTED_REGIONS


def _short(error: ValueError) -> str:
    return str(error)[:120]
