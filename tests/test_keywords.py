"""The end-user keyword table (optouts.domain.keywords): what ACS acts on by itself, matched as
carriers match: the whole message, ignoring case and surrounding white space."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optouts.domain.keywords import (
    ACS_FAQ,
    KEYWORDS,
    MAX_KEYWORD_MESSAGE_CHARS,
    KeywordEffect,
    match_keyword,
)

OPT_OUT = ["STOP", "UNSUBSCRIBE", "CANCEL", "STOPALL", "END", "QUIT", "ARRET", "ARRÊT"]
OPT_IN = ["START", "UNSTOP"]


def test_the_table_is_the_documented_one() -> None:
    assert [k.word for k in KEYWORDS if k.effect is KeywordEffect.OPT_OUT] == OPT_OUT
    assert [k.word for k in KEYWORDS if k.effect is KeywordEffect.OPT_IN] == OPT_IN
    # The keywords ACS's own FAQ names for its automatic handling are all there, from that source.
    assert {k.word for k in KEYWORDS if k.source == ACS_FAQ} == {"STOP", "START", "UNSTOP"}
    assert all(k.source for k in KEYWORDS)
    assert {k.word for k in KEYWORDS if k.locale == "fr-CA"} == {"ARRET", "ARRÊT"}
    assert KeywordEffect.OPT_OUT.value == "add" and KeywordEffect.OPT_IN.value == "remove"


@pytest.mark.parametrize("word", OPT_OUT + OPT_IN)
@pytest.mark.parametrize("spelled", [str.upper, str.lower, str.title, lambda w: f"  {w}\n", lambda w: f"\t{w.lower()} "])
def test_every_keyword_matches_in_any_case_with_surrounding_space(word: str, spelled: object) -> None:
    keyword = match_keyword(spelled(word))  # type: ignore[operator]
    assert keyword is not None and keyword.word == word
    assert keyword.effect is (KeywordEffect.OPT_OUT if word in OPT_OUT else KeywordEffect.OPT_IN)


@pytest.mark.parametrize("message", [
    "STOP.", "stop please", "please stop", "STOP STOP", "S TOP", "STOPP", "STO", "HELP", "INFO", "YES", "",
    "   ", "stop\u200b", "ＳＴＯＰ", "UN STOP", "opt out",
])
def test_anything_but_the_whole_keyword_is_not_one(message: str) -> None:
    assert match_keyword(message) is None


def test_locale_variant_matches_however_its_accent_is_encoded() -> None:
    composed, decomposed = "arr\u00eat", "arre\u0302t"
    assert match_keyword(composed) == match_keyword(decomposed) == match_keyword("ARRET".replace("E", "Ê"))
    assert match_keyword(composed) is not None and match_keyword(composed).effect is KeywordEffect.OPT_OUT  # type: ignore[union-attr]


def test_unicode_case_folding_not_just_ascii() -> None:
    # Turkish dotted capital I lowercases to "i̇", not "i": "QUİT" is not QUIT, as no carrier reads it so.
    assert match_keyword("QUİT") is None
    assert match_keyword("ﬆop") is not None  # the "st" ligature case-folds to "st"


def test_a_long_message_is_refused_unread() -> None:
    assert match_keyword(" " * (MAX_KEYWORD_MESSAGE_CHARS - 4) + "STOP") is not None
    assert match_keyword(" " * (MAX_KEYWORD_MESSAGE_CHARS - 3) + "STOP") is None


@given(st.text(max_size=80))
def test_a_match_is_always_a_table_entry_whose_folded_word_is_the_message(message: str) -> None:
    keyword = match_keyword(message)
    if keyword is not None:
        assert keyword in KEYWORDS
        assert unicodedata.normalize("NFC", message).strip().casefold() == keyword.word.casefold()


@given(st.sampled_from(OPT_OUT + OPT_IN), st.text(alphabet=" \t\r\n", max_size=5),
       st.text(alphabet=" \t\r\n", max_size=5))
def test_surrounding_white_space_never_matters(word: str, before: str, after: str) -> None:
    assert match_keyword(before + word + after) == match_keyword(word)
