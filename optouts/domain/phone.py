"""Phone-number normalization to E.164, and masking for logs.

Normalization is deliberately strict about characters: letters are refused rather
than mapped to keypad digits (phonenumbers would read "1-800-FLOWERS" as digits),
because a look-alike letter in a typed number must not opt out somebody else.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberFormat

from optouts.domain.limits import MAX_INPUT_LENGTH

SEPARATORS = frozenset(" -.()/\u00a0\u2010\u2011\u2012\u2013\u2014\u2212")
_DROP_SEPARATORS = str.maketrans(dict.fromkeys(SEPARATORS))
_ALREADY_COMPACT = re.compile(r"\+?[0-9]+", re.ASCII)


# Not frozen: one is built per number (10,000 in a bulk call), and a frozen dataclass's
# __init__ costs three times as much. Nothing changes them after construction.
@dataclass(slots=True)
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
    if candidate.startswith("00") and not _starts_with_own_international_prefix(candidate, region):
        # "00" is the international prefix most of the world dials; where the region's own is
        # another one that starts with 00 (0011 in AU, 009 in NG), parse strips that one instead:
        # read as "+", "009 1 425..." from Nigeria would become an Indian number.
        candidate = "+" + candidate[2:]
    e164 = _plain_e164(candidate, region)
    return NormalizedNumber(e164) if e164 is not None else _parse(candidate, region)


def _starts_with_own_international_prefix(candidate: str, region: str) -> bool:
    rules = _rules_for_region(region)
    return rules is not None and rules.international_prefix is not None and (
        rules.international_prefix.match(candidate) is not None
    )


def _parse(candidate: str, region: str) -> NormalizationResult:
    try:
        parsed = phonenumbers.parse(candidate, None if candidate.startswith("+") else region)
    except NumberParseException:
        return InvalidNumber("UnparsablePhoneNumber", "the phone number could not be parsed")
    if not phonenumbers.is_possible_number(parsed):
        return InvalidNumber("ImpossiblePhoneNumber", "the phone number has the wrong length for its country")
    return NormalizedNumber(phonenumbers.format_number(parsed, PhoneNumberFormat.E164))


def _digits_and_plus(text: str) -> str | None:
    """Keep digits (any script, as ASCII) and one leading +; None if anything else is there."""
    if _ALREADY_COMPACT.fullmatch(text):
        return text
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


def _plain_e164(candidate: str, region: str) -> str | None:
    """The E.164 form of a number that needs none of `phonenumbers.parse`'s rewriting,
    or None to let `parse` decide.

    `parse` costs ~15 µs, most of it general-purpose work (extensions, letters, dialling
    prefixes) that a plain `+<country code><number>` or national number never needs; in
    bulk that CPU holds the GIL the I/O threads are waiting for. Whenever a prefix that
    `parse` could strip or reinterpret is present, this declines and `parse` runs as
    before. tests/test_phone.py checks that both paths agree.
    """
    if candidate.startswith("+"):
        rules = _rules_for_international(candidate[1:4])
        if rules is None:
            return None
        national = candidate[1 + len(rules.country_code) :]
    else:
        rules, national = _rules_for_region(region), candidate
        if rules is None or national.startswith(rules.country_code) or (
            rules.international_prefix is not None and rules.international_prefix.match(national)
        ):
            return None
    if (
        national.startswith("0")
        or len(national) not in rules.possible_lengths
        or (rules.national_prefix is not None and rules.national_prefix.match(national))
    ):
        return None
    return f"+{rules.country_code}{national}"


@dataclass(frozen=True, slots=True)
class _ParsingRules:
    """What of a numbering plan's metadata decides whether `parse` would rewrite a number."""

    country_code: str
    international_prefix: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    #: National number lengths `is_possible_number` accepts for the country code.
    possible_lengths: frozenset[int]

    @classmethod
    def of(cls, metadata: PhoneMetadata | None) -> _ParsingRules | None:
        if metadata is None or metadata.country_code is None:
            return None
        return cls(
            str(metadata.country_code),
            re.compile(metadata.international_prefix) if metadata.international_prefix else None,
            re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None,
            _possible_lengths(metadata.country_code),
        )


@lru_cache(maxsize=512)
def _rules_for_region(region: str) -> _ParsingRules | None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    return _ParsingRules.of(PhoneMetadata.metadata_for_region(region))


@lru_cache(maxsize=1024)
def _rules_for_international(leading_digits: str) -> _ParsingRules | None:
    """The rules of the country code that `leading_digits` (up to three) start with.
    Country codes are prefix-free, so the first 1-3 digit prefix that is one is the one."""
    for length in (1, 2, 3):
        country_code = leading_digits[:length]
        if len(country_code) == length and country_code in _COUNTRY_CODES:
            return _rules_for_country_code(country_code)
    return None


@lru_cache(maxsize=512)
def _rules_for_country_code(country_code: str) -> _ParsingRules | None:
    code = int(country_code)
    main_region = phonenumbers.region_code_for_country_code(code)
    return _ParsingRules.of(PhoneMetadata.metadata_for_region_or_calling_code(code, main_region))


def _possible_lengths(country_code: int) -> frozenset[int]:
    """`is_possible_number`'s verdict depends on nothing but the national number's length,
    so asking phonenumbers once per length gives the same answers as asking per number."""
    return frozenset(
        length
        for length in range(_MIN_NATIONAL_LENGTH, _MAX_NATIONAL_LENGTH + 1)
        if phonenumbers.is_possible_number(PhoneNumber(country_code=country_code, national_number=int("1" * length)))
    )


#: The national significant number lengths `parse` accepts at all.
_MIN_NATIONAL_LENGTH, _MAX_NATIONAL_LENGTH = 2, 17
_COUNTRY_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


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
