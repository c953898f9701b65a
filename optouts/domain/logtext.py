"""Text from callers and upstream services, made safe to put in a log line.

A log line is one record: a line break inside a value (CR, LF, or any of Unicode's line
separators) would let whoever wrote that value forge records of their own. Every piece of
caller or upstream text that reaches a log call goes through `log_safe` first.
"""

from __future__ import annotations

#: Longest piece of foreign text kept in one log record.
DEFAULT_LIMIT = 200


def log_safe(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """`value` as one printable line of at most `limit` characters: control, format and
    separator characters become `\\xNN`/`\\uNNNN` escapes, so nothing can end the line."""
    text = value if isinstance(value, str) else str(value)
    clipped = len(text) > limit
    text = text[:limit]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text + "…" if clipped else text
