import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optouts.domain import phone
from optouts.domain.phone import (
    InvalidNumber,
    NormalizedNumber,
    _parse,
    _plain_e164,
    is_e164,
    mask,
    normalize,
)


@pytest.fixture(autouse=True)
def fresh_rules() -> None:
    """Each test builds the numbering-plan rules afresh, so a bug in building them cannot hide
    behind rules an earlier test cached."""
    for cached in (phone._rules_for_region, phone._rules_for_international, phone._rules_for_country_code):
        cached.cache_clear()


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14255550100", "US", "+14255550100"),
        ("(425) 555-0100", "US", "+14255550100"),
        ("425.555.0100", "US", "+14255550100"),
        ("  425 555 0100  ", "US", "+14255550100"),
        ("1-425-555-0100", "US", "+14255550100"),
        ("0014255550100", "US", "+14255550100"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("00442079460958", "DE", "+442079460958"),
        ("\uff0b\uff11\uff14\uff12\uff15\uff15\uff15\uff15\uff10\uff11\uff10\uff10", "US", None),  # fullwidth plus is not "+"
        ("+\u0661\u0664\u0662\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660", "US", "+14255550100"),  # Arabic-Indic digits
        # A region phonenumbers does not know: an international number still reads, a national one cannot.
        ("+14255550100", "ZZ", "+14255550100"),
        ("4255550100", "ZZ", None),
    ],
)
def test_normalizes_to_e164(raw: str, region: str, expected: str | None) -> None:
    result = normalize(raw, region)
    if expected is None:
        assert isinstance(result, InvalidNumber)
    else:
        assert result == NormalizedNumber(expected)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "EmptyPhoneNumber"),
        ("   ", "EmptyPhoneNumber"),
        (14255550100, "NotAString"),
        (None, "NotAString"),
        (["+14255550100"], "NotAString"),
        ("not a number", "UnexpectedCharacters"),
        ("+1425555O1OO", "UnexpectedCharacters"),  # letter O look-alikes
        ("1-800-FLOWERS", "UnexpectedCharacters"),
        ("+1 425 555 0100 ext 12", "UnexpectedCharacters"),
        ("++14255550100", "UnexpectedCharacters"),
        ("+1425+5550100", "UnexpectedCharacters"),
        ("12", "ImpossiblePhoneNumber"),
        ("+1425555010099999", "ImpossiblePhoneNumber"),
        ("9" * 70, "PhoneNumberTooLong"),
        ("+", "UnexpectedCharacters"),
        ("+\u00b9\u00b2", "UnexpectedCharacters"),  # superscripts are digits but not decimal
    ],
)
def test_rejects_with_a_reason(raw: object, code: str) -> None:
    result = normalize(raw, "US")
    assert isinstance(result, InvalidNumber)
    assert result.code == code
    assert result.message


def test_mask_keeps_prefix_and_last_four_only() -> None:
    assert mask("+14255550100") == "+1425***0100"
    assert "5550" not in mask("+14255550100")
    assert mask("+1234") == "+1***"


@given(st.text(max_size=80))
def test_normalize_never_raises_and_valid_results_are_e164(raw: str) -> None:
    result = normalize(raw, "US")
    if isinstance(result, NormalizedNumber):
        assert is_e164(result.e164)


@given(st.from_regex(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True))
def test_e164_input_round_trips(number: str) -> None:
    assert normalize(number, "GB") == NormalizedNumber(number)


# The plain-number fast path must never disagree with phonenumbers.parse.

_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
#: 1000 by default; the active Hypothesis profile scales it (see tests/conftest.py). The cases
#: random sampling misses (trunk and international prefixes) are fixed tables further down.
_MANY = 10 * settings().max_examples
_COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _agrees_with_parse(candidate: str, region: str) -> bool:
    """True when the fast path answered (and matched parse); False when it declined."""
    fast = _plain_e164(candidate, region)
    if fast is None:
        return False
    assert _parse(candidate, region) == NormalizedNumber(fast), (candidate, region)
    return True


@settings(max_examples=_MANY)
@given(
    st.sampled_from(_COUNTRY_CODES),
    st.from_regex(r"[0-9]{1,16}", fullmatch=True),
)
def test_fast_path_agrees_with_parse_for_international_numbers(country_code: int, national: str) -> None:
    _agrees_with_parse(f"+{country_code}{national}", "US")


@settings(max_examples=_MANY)
@given(st.sampled_from(_REGIONS), st.booleans(), st.from_regex(r"[0-9]{1,15}", fullmatch=True))
def test_fast_path_agrees_with_parse_for_national_numbers(region: str, own_code_first: bool, national: str) -> None:
    # A national number that starts with the region's own country code is one that
    # parse may read as international.
    prefix = str(phonenumbers.country_code_for_region(region)) if own_code_first else ""
    _agrees_with_parse(prefix + national, region)


def test_fast_path_agrees_on_every_example_number_and_takes_most() -> None:
    taken = tried = 0
    for region in _REGIONS:
        for number_type in range(phonenumbers.PhoneNumberType.UNKNOWN):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            national = phonenumbers.national_significant_number(example)
            for candidate, parse_region in ((f"+{example.country_code}{national}", "US"), (national, region)):
                tried += 1
                taken += _agrees_with_parse(candidate, parse_region)
    # Declining is always safe, so the fast path is only worth having if it usually answers.
    assert tried > 2000
    assert taken / tried > 0.6, (taken, tried)


# Random sampling above never dials a trunk prefix; every region that has one is checked here,
# with each of its example numbers dialled as its people dial it at home.
def _domestic_dialling() -> list[tuple[str, str]]:
    cases: set[tuple[str, str]] = set()
    for region in _REGIONS:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is None or not metadata.national_prefix:
            continue
        for number_type in range(phonenumbers.PhoneNumberType.UNKNOWN):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            national = phonenumbers.national_significant_number(example)
            cases.add((phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL), region))
            cases.add((metadata.national_prefix + national, region))
    return sorted(cases, key=lambda case: (case[1], case[0]))


_DOMESTIC = _domestic_dialling()


def _what_phonenumbers_says(text: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def test_every_region_with_a_trunk_prefix_is_dialled_domestically() -> None:
    regions = {region for _, region in _DOMESTIC}
    assert len(regions) > 120 and {"BY", "GB", "DE", "FR", "RU", "UA", "JP", "AU"} <= regions


def test_domestic_dialling_with_the_trunk_prefix_agrees_with_phonenumbers() -> None:
    disagreements = []
    for dialled, region in _DOMESTIC:
        result = normalize(dialled, region)
        expected = _what_phonenumbers_says(dialled, region)
        agrees = isinstance(result, InvalidNumber) if expected is None else result == NormalizedNumber(expected)
        if not agrees:
            disagreements.append((region, dialled, result, expected))
    assert disagreements == []
    assert len(_DOMESTIC) > 1000


@pytest.mark.parametrize(
    ("dialled", "region", "expected"),
    [
        ("8 029 123 45 67", "BY", "+375291234567"),
        ("80291234567", "BY", "+375291234567"),
        ("8 (800) 555-35-35", "RU", "+78005553535"),
        ("030 123456", "DE", "+4930123456"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("03-1234-5678", "JP", "+81312345678"),
    ],
)
def test_trunk_prefixes_are_dropped(dialled: str, region: str, expected: str) -> None:
    assert normalize(dialled, region) == NormalizedNumber(expected)


# Dialled abroad: the region's own international (IDD) prefix, then a country code.
def _international_dialling() -> list[tuple[str, str]]:
    cases = []
    for region in _REGIONS:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        prefix = (metadata.preferred_international_prefix or "").replace("~", "") or metadata.international_prefix
        if prefix and prefix.isdigit():
            # Short ones too: a national number that starts with the prefix must not be read as national.
            for number in ("442079460958", "14255550100", "375291234567", "33612345678", "828082", "94604415"):
                cases.append((prefix + number, region))
    return cases


def test_dialling_out_with_each_regions_international_prefix_agrees_with_phonenumbers() -> None:
    cases = _international_dialling()
    assert len(cases) > 900 and ("119828082", "CU") in cases and ("810828082", "TJ") in cases
    disagreements = []
    for dialled, region in cases:
        result = normalize(dialled, region)
        expected = _what_phonenumbers_says(dialled, region)
        agrees = isinstance(result, InvalidNumber) if expected is None else result == NormalizedNumber(expected)
        if not agrees:
            disagreements.append((region, dialled, result, expected))
    assert disagreements == []


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (None, "NotAString", "phone numbers must be given as strings"),
        (" ", "EmptyPhoneNumber", "the phone number is empty"),
        ("1" * 65, "PhoneNumberTooLong", "the phone number is longer than 64 characters"),
        ("x4255550100", "UnexpectedCharacters",
         "a phone number may only contain digits, a leading +, spaces and - . ( ) /"),
        ("+0", "UnparsablePhoneNumber", "the phone number could not be parsed"),
        ("12", "ImpossiblePhoneNumber", "the phone number has the wrong length for its country"),
    ],
)
def test_each_refusal_has_its_code_and_message(raw: object, code: str, message: str) -> None:
    assert normalize(raw, "US") == InvalidNumber(code, message)


def test_the_length_limit_is_64_characters_after_trimming() -> None:
    assert normalize("  " + "1" * 64 + "  ", "US").code != "PhoneNumberTooLong"  # type: ignore[union-attr]
    assert normalize("1" * 65, "US").code == "PhoneNumberTooLong"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [("+14255550100", "US", "+14255550100"), ("0014255550100", "US", "+14255550100"),
     ("(425) 555-0100", "US", "+14255550100"),
     ("+\u0661\u0664\u0662\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660", "US", "+14255550100"),
     ("2079460958", "GB", "+442079460958"),
     ("+628123456789012345", "US", "+628123456789012345")],  # Indonesia allows 16-digit national numbers
)
def test_plain_numbers_take_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, raw: str, region: str, expected: str
) -> None:
    """The fast path is why bulk calls are affordable: plain numbers must never need parse."""
    def no_parse(*_: object) -> None:
        raise AssertionError("phonenumbers.parse was called for a plain number")
    monkeypatch.setattr(phonenumbers, "parse", no_parse)
    assert normalize(raw, region) == NormalizedNumber(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("+14255550100", True), ("+1425555", True), ("+142555", False), ("+123456789012345", True),
     ("+1234567890123456", False), ("14255550100", False), ("+04255550100", False), ("+1425555010a", False),
     ("+\u0661\u0664\u0662\u0665\u0665\u0665\u0665\u0660", False), ("++1425555010", False),
     ("+1425555 100", False), ("+\u06614255550100", False)],
)
def test_is_e164(text: str, expected: bool) -> None:
    assert is_e164(text) is expected


@pytest.mark.parametrize(
    ("number", "masked"),
    [("+1234567", "+1***"), ("+12345678", "+1234***5678"), ("+14255550100", "+1425***0100"), ("+12", "+1***")],
)
def test_mask_lengths(number: str, masked: str) -> None:
    assert mask(number) == masked


def test_possible_lengths_are_phonenumbers_own() -> None:
    assert phone._possible_lengths(1) == frozenset({7, 10})
    assert phone._possible_lengths(44) == frozenset(range(4, 11))
    assert phone._possible_lengths(49) == frozenset(range(2, 16))
    assert phone._possible_lengths(375) == frozenset(range(5, 12))
    assert {16, 17} <= phone._possible_lengths(62)
