import base64

import pytest

from optouts.providers.acs import signing

PUBLISHED_KEY = base64.b64decode("pw==")
HOST = "contoso.communicationservices.azure.com"
DATE = "Wed, 13 Apr 2022 18:09:12 GMT"


@pytest.mark.parametrize(
    ("path_and_query", "expected"),
    [
        ("/", "88MDmJhUR3m5QhFxb8ztShsSwlGrg7g/6XPnWf7QEO4="),
        ("/testPath?testQuery=yes", "il99+rd6V5O136roX/zVePCNle78HmvC4B7tu9zRH3I="),
    ],
)
def test_signature_matches_published_vectors(path_and_query: str, expected: str) -> None:
    text = signing.string_to_sign("GET", path_and_query, DATE, HOST, signing.content_sha256(b""))
    assert signing.signature(PUBLISHED_KEY, text) == expected


def test_string_to_sign_layout() -> None:
    text = signing.string_to_sign("post", "/sms/optouts:add?api-version=1", DATE, "127.0.0.1:8089", "hash")
    assert text == f"POST\n/sms/optouts:add?api-version=1\n{DATE};127.0.0.1:8089;hash"


def test_empty_body_hash_is_sha256_of_nothing() -> None:
    assert signing.content_sha256(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_authorization_header_names_signed_headers() -> None:
    assert signing.authorization_header("abc") == (
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=abc"
    )
