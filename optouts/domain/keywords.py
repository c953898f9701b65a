"""End-user keywords: the whole-message replies that make ACS opt a number out, or back in, by itself.

ACS documents its automatic handling in the SMS FAQ ("Opt-out handling"): an end user who texts STOP
to a toll-free number or a short code is blocked from that sender; START or UNSTOP undoes it. Its
messaging policy asks senders to honour the other common opt-out words as well ("unsubscribe",
"cancel"), and US carriers, which enforce toll-free opt-outs themselves, use the industry's standard
set. docs/end-user-keywords.md has the table with where each entry comes from; this module is the
one place that holds it, for the gateway and for the ACS emulator alike.

Matching is of the whole message, ignoring case (Unicode case folding) and surrounding white space:
"stop" and " Stop\\n" match, "stop please" and "STOP." do not, as carriers match.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum


class KeywordEffect(Enum):
    """What ACS does to the sender's opt-out list; the value is the gateway's action name."""

    OPT_OUT = "add"
    OPT_IN = "remove"


@dataclass(frozen=True, slots=True)
class Keyword:
    #: The canonical spelling, as recorded in the audit trail.
    word: str
    effect: KeywordEffect
    #: Where the keyword is documented (docs/end-user-keywords.md lists the sources).
    source: str
    #: Where it applies, when only in one locale ("fr-CA"); None everywhere.
    locale: str | None = None


ACS_FAQ = "ACS SMS FAQ, opt-out handling"
ACS_POLICY = "ACS messaging policy, opt-out requirements"
US_CARRIERS = "US carrier (CTIA) standard opt-out keywords, enforced on toll-free numbers"
CANADA = "Canadian French variant (CA toll-free numbers)"

KEYWORDS: tuple[Keyword, ...] = (
    Keyword("STOP", KeywordEffect.OPT_OUT, ACS_FAQ),
    Keyword("UNSUBSCRIBE", KeywordEffect.OPT_OUT, ACS_POLICY),
    Keyword("CANCEL", KeywordEffect.OPT_OUT, ACS_POLICY),
    Keyword("STOPALL", KeywordEffect.OPT_OUT, US_CARRIERS),
    Keyword("END", KeywordEffect.OPT_OUT, US_CARRIERS),
    Keyword("QUIT", KeywordEffect.OPT_OUT, US_CARRIERS),
    Keyword("ARRET", KeywordEffect.OPT_OUT, CANADA, "fr-CA"),
    Keyword("ARRÊT", KeywordEffect.OPT_OUT, CANADA, "fr-CA"),
    Keyword("START", KeywordEffect.OPT_IN, ACS_FAQ),
    Keyword("UNSTOP", KeywordEffect.OPT_IN, ACS_FAQ),
)

#: No keyword is longer; a longer message is not one, whatever it holds (checked before any work).
MAX_KEYWORD_MESSAGE_CHARS = 64


def _folded(text: str) -> str:
    # NFC first: "ARRÊT" typed as E + combining circumflex is the same word.
    return unicodedata.normalize("NFC", text).strip().casefold()


_BY_FOLDED = {_folded(keyword.word): keyword for keyword in KEYWORDS}


def match_keyword(message: str) -> Keyword | None:
    """The keyword the whole message is, or None. Bounded: long messages are refused unread."""
    if len(message) > MAX_KEYWORD_MESSAGE_CHARS:
        return None
    return _BY_FOLDED.get(_folded(message))
