"""The suite-wide log scan (tests/conftest.py) must catch what it is there to catch."""

from .conftest import find_leaks


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
