"""Text from outside (the gateway's answers, input files) made safe for a terminal and a CSV cell."""

from __future__ import annotations

#: Characters a spreadsheet reads as the start of a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PHONE_CHARACTERS = frozenset("0123456789+-(). /")


def printable(text: str, limit: int) -> str:
    """At most `limit` characters, with every control or format character (escape sequences,
    bidi overrides, line breaks) shown as U+FFFD: a terminal must not interpret the gateway's text."""
    cleaned = "".join(c if c.isprintable() else "\ufffd" for c in text[:limit])
    return cleaned + ("…" if len(text) > limit else "")


def csv_cell(value: object) -> str:
    """A value for a CSV cell that a spreadsheet will show rather than evaluate. Phone numbers
    ("+1 425...", "-") stay as written; other text starting like a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_STARTS) and not set(text) <= _PHONE_CHARACTERS:
        return "'" + text
    return text
