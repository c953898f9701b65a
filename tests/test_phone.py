import pytest
from hypothesis import given
from hypothesis import strategies as st

from optouts.phone import InvalidNumber, NormalizedNumber, is_e164, mask, normalize


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
