"""The suite-wide log scan (tests/conftest.py) must catch what it is there to catch."""

import logging

from .conftest import _KeepAll, find_leaks


def test_scan_flags_keys_tokens_and_full_numbers() -> None:
    leaks = find_leaks([
        "x: endpoint=http://127.0.0.1/;accesskey=c2VjcmV0LWtleS1tYXRlcmlhbA==",
        "x: Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi",
        "x: removed +14255550100",
        "x: key " + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq",
    ])
    assert len(leaks) == 4


def test_scan_passes_masked_numbers_and_senders() -> None:
    assert find_leaks([
        "x: failed for +1425***0100",
        "x: opt-out remove for +18005550100: {'total': 3}",
        "x: Authorization: REDACTED",
        "x: 'WWW-Authenticate': 'Bearer authorization=\"https://login.example/tenant\", resource=\"https://vault.azure.net\"'",
        "x: see https://aka.ms/azsdk/python/identity/defaultazurecredential/troubleshoot",
        "x: request id 605cab0a-e66d-11f1-883f-020000000001",
    ]) == []


def test_a_record_that_cannot_format_is_counted_and_still_scanned() -> None:
    kept = _KeepAll()
    logger = logging.getLogger("tests.log_scan.unformattable")
    logger.propagate = False  # kept apart from the suite-wide scan, which would fail the run
    logger.addHandler(kept)
    try:
        logger.warning("removed %s and %s", "+14255550100")  # one argument short
        logger.warning("fine %s", "text")
    finally:
        logger.removeHandler(kept)
    assert len(kept.unformattable) == 1 and "test_log_scan.py" in kept.unformattable[0]
    assert len(kept.lines) == 2
    assert len(find_leaks(kept.lines)) == 1  # the number in the unformatted arguments is found
