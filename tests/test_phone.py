import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optouts.domain.phone import (
    InvalidNumber,
    NormalizedNumber,
    _parse,
    _plain_e164,
    is_e164,
    mask,
    normalize,
)


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
_COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _agrees_with_parse(candidate: str, region: str) -> bool:
    """True when the fast path answered (and matched parse); False when it declined."""
    fast = _plain_e164(candidate, region)
    if fast is None:
        return False
    assert _parse(candidate, region) == NormalizedNumber(fast), (candidate, region)
    return True


@settings(max_examples=3000)
@given(
    st.sampled_from(_COUNTRY_CODES),
    st.from_regex(r"[0-9]{1,16}", fullmatch=True),
)
def test_fast_path_agrees_with_parse_for_international_numbers(country_code: int, national: str) -> None:
    _agrees_with_parse(f"+{country_code}{national}", "US")


@settings(max_examples=3000)
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
