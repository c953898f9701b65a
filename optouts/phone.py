"""Phone-number normalization to E.164, and masking for logs.

Normalization is deliberately strict about characters: letters are refused rather
than mapped to keypad digits (phonenumbers would read "1-800-FLOWERS" as digits),
because a look-alike letter in a typed number must not opt out somebody else.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

#: Longer than any real number with generous formatting; keeps parsing cheap.
MAX_INPUT_LENGTH = 64
SEPARATORS = frozenset(" -.()/\u00a0\u2010\u2011\u2012\u2013\u2014\u2212")
_DROP_SEPARATORS = str.maketrans(dict.fromkeys(SEPARATORS))


@dataclass(frozen=True, slots=True)
class NormalizedNumber:
    e164: str


@dataclass(frozen=True, slots=True)
class InvalidNumber:
    code: str
    message: str


NormalizationResult = NormalizedNumber | InvalidNumber


def normalize(raw: object, region: str) -> NormalizationResult:
    """Turn what a caller typed into E.164, or say why it cannot be one."""
    if not isinstance(raw, str):
        return InvalidNumber("NotAString", "phone numbers must be given as strings")
    text = raw.strip()
    if not text:
        return InvalidNumber("EmptyPhoneNumber", "the phone number is empty")
    if len(text) > MAX_INPUT_LENGTH:
        return InvalidNumber("PhoneNumberTooLong", f"the phone number is longer than {MAX_INPUT_LENGTH} characters")
    candidate = _digits_and_plus(text)
    if candidate is None:
        return InvalidNumber(
            "UnexpectedCharacters",
            "a phone number may only contain digits, a leading +, spaces and - . ( ) /",
        )
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        parsed = phonenumbers.parse(candidate, None if candidate.startswith("+") else region)
    except NumberParseException:
        return InvalidNumber("UnparsablePhoneNumber", "the phone number could not be parsed")
    if not phonenumbers.is_possible_number(parsed):
        return InvalidNumber("ImpossiblePhoneNumber", "the phone number has the wrong length for its country")
    return NormalizedNumber(phonenumbers.format_number(parsed, PhoneNumberFormat.E164))


def _digits_and_plus(text: str) -> str | None:
    """Keep digits (any script, as ASCII) and one leading +; None if anything else is there."""
    compact = text.translate(_DROP_SEPARATORS)
    if compact.isascii():
        # The common case, and cheap: no digits of other scripts to convert.
        digits = compact[1:] if compact.startswith("+") else compact
        return compact if digits.isdigit() else None
    out: list[str] = []
    for char in compact:
        if char == "+" and not out:
            out.append("+")
        elif char.isdecimal():
            out.append(str(unicodedata.decimal(char)))
        else:
            return None
    digits = "".join(out)
    return digits if digits.strip("+") else None


def is_e164(text: str) -> bool:
    return (
        len(text) >= 8 and len(text) <= 16 and text[0] == "+" and text[1:].isascii()
        and text[1:].isdigit() and text[1] != "0"
    )


def mask(phone_number: str) -> str:
    """`+14255550100` -> `+1425***0100`: enough to correlate, not enough to identify."""
    if len(phone_number) <= 8:
        return phone_number[:2] + "***"
    return f"{phone_number[:5]}***{phone_number[-4:]}"
