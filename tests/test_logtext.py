from hypothesis import given
from hypothesis import strategies as st

from optouts.domain.logtext import log_safe


def test_line_breaks_of_every_kind_are_escaped() -> None:
    for brk in ("\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"):
        out = log_safe(f"a{brk}INFO forged")
        assert out.splitlines() == [out], repr(out)
        assert "forged" in out


def test_plain_text_is_unchanged_and_long_text_is_clipped() -> None:
    assert log_safe("ticket 4711 ü") == "ticket 4711 ü"
    assert log_safe("x" * 300, limit=10) == "x" * 10 + "…"


@given(st.text())
def test_never_more_than_one_line(text: str) -> None:
    out = log_safe(text)
    assert len(out.splitlines()) <= 1
    assert len(out) <= 200 * 10 + 1  # an escape is at most 10 characters
