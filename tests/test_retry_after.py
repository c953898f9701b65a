"""Retry-After values from an upstream are bounded before anything waits on them."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from optouts.providers.acs.policies import MAX_RETRY_AFTER_SECONDS, parse_retry_after

from .conftest import SENDER, fast_client
from .upstream import ScriptedUpstream, Seen, answer, echo_value


@pytest.mark.parametrize(("value", "unit", "expected"), [
    ("3", 1.0, 3.0),
    ("0.5", 1.0, 0.5),
    ("1500", 0.001, 1.5),
    ("1e400", 1.0, MAX_RETRY_AFTER_SECONDS),  # float('1e400') is infinity
    ("inf", 1.0, MAX_RETRY_AFTER_SECONDS),
    ("86400000", 1.0, MAX_RETRY_AFTER_SECONDS),
    ("-30", 1.0, 0.0),
    ("-inf", 0.001, 0.0),
    ("nan", 1.0, None),
    ("", 1.0, None),
    (None, 1.0, None),
    ("soon", 1.0, None),
    ("Mon, 99 Foo 2026 99:99:99 GMT", 1.0, None),
    ("1" * 100, 1.0, None),  # longer than any delay anyone meant
    (formatdate(0, usegmt=True), 1.0, 0.0),  # a date in the past
])
def test_values_are_clamped_or_dropped(value: str | None, unit: float, expected: float | None) -> None:
    assert parse_retry_after(value, unit) == expected


def test_an_http_date_in_the_future_is_a_bounded_delay() -> None:
    soon = parse_retry_after(formatdate(time.time() + 20, usegmt=True))
    assert soon is not None and 15 <= soon <= 21
    far = parse_retry_after(formatdate(time.time() + 10**7, usegmt=True))
    assert far == MAX_RETRY_AFTER_SECONDS


def test_the_retry_policy_never_sees_a_malformed_value() -> None:
    """azure-core's RetryPolicy parses Retry-After itself and raises on a malformed HTTP date;
    RetryAfterPolicy drops it first, so the call is simply retried with backoff."""
    def script(seen: Seen) -> tuple[bytes, bool]:
        if len(upstream.requests) == 1:
            return answer(503, {}, "Retry-After: Mon, 99 Foo 2026 99:99:99 GMT"), False
        return answer(200, echo_value(seen)), False

    with ScriptedUpstream(script) as upstream, fast_client(upstream.connection_string(), retry_total=2) as client:
        assert client.add(SENDER, ["+14255550100"])[0].succeeded
    assert len(upstream.requests) == 2
