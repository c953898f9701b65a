"""X-Forwarded-Host/-Proto shape documents people import (openapi.json) and links clients follow
(nextLink): they are believed only from the proxies named in OPTOUT_TRUSTED_FORWARDERS, and the
answers say they vary with them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from blueprints.openapi_api import public_origin
from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost

from ..conftest import SENDER
from .gateway import RawClient, running_gateway

FORGED = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
NUMBER = "+14255550142"


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}) as running:
        yield running


def own_host(host: LocalHost) -> str:
    return host.base_url.removeprefix("http://")


def vary(headers: dict[str, str]) -> set[str]:
    return {part.strip().lower() for part in headers.get("vary", "").split(",") if part.strip()}


def history_with_next_link(http: RawClient, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    for action in ("add", "remove"):
        assert http.post_json(f"/api/optouts/{action}", {"phoneNumbers": [NUMBER]}).status == 200
    deadline = time.monotonic() + 60  # the host's indexer writes the history moments after the answers
    while True:
        answer = http.request("GET", f"/api/optouts/{NUMBER}/history?top=1", headers=headers)
        assert answer.status == 200, answer.body[:300]
        if "nextLink" in answer.json() or time.monotonic() > deadline:
            return answer.json()["nextLink"], dict(answer.headers)
        time.sleep(0.2)


def test_untrusted_forwarded_headers_are_ignored_and_answers_vary(azurite: Azurite, acs: AcsEmulator) -> None:
    with running_gateway(acs.connection_string, azurite.connection_string) as host:
        http = RawClient(host.base_url)
        try:
            answer = http.request("GET", "/api/openapi.json", headers=FORGED, key=None)
            assert answer.status == 200
            document = answer.json()
            assert document["host"] == own_host(host) and document["schemes"] == ["http"]
            assert {"x-forwarded-host", "x-forwarded-proto"} <= vary(dict(answer.headers))
            link, headers = history_with_next_link(http, FORGED)
            assert urlsplit(link).netloc == own_host(host) and urlsplit(link).scheme == "http", link
            assert {"x-forwarded-host", "x-forwarded-proto"} <= vary(headers)
        finally:
            http.close()


def test_forwarded_headers_from_a_trusted_proxy_are_used(azurite: Azurite, acs: AcsEmulator) -> None:
    # The local host, like App Service's front end, appends the connecting address to
    # X-Forwarded-For: the loopback is the proxy here.
    with running_gateway(acs.connection_string, azurite.connection_string,
                         OPTOUT_TRUSTED_FORWARDERS="127.0.0.0/8, ::1") as host:
        http = RawClient(host.base_url)
        try:
            proxied = {"X-Forwarded-Host": "optouts.contoso.com", "X-Forwarded-Proto": "https"}
            document = http.request("GET", "/api/openapi.json", headers=proxied, key=None).json()
            assert document["host"] == "optouts.contoso.com" and document["schemes"] == ["https"]
            link, _ = history_with_next_link(http, proxied)
            assert link.startswith("https://optouts.contoso.com/api/optouts/"), link
        finally:
            http.close()


URL = "http://func-optouts.azurewebsites.net/api/openapi.json"


@pytest.mark.parametrize(("headers", "trusted", "expected"), [
    # No proxy configured: the forwarded headers are anyone's to write.
    ({"x-forwarded-host": "evil.example", "x-forwarded-for": "10.0.0.4"}, "", ("http", "func-optouts.azurewebsites.net")),
    # The proxy is the last hop App Service saw (it appends the peer, with a port).
    ({"x-forwarded-host": "gw.contoso.com", "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9, 10.0.0.4:50123"},
     "10.0.0.0/24", ("https", "gw.contoso.com")),
    # A client claiming to be the proxy in X-Forwarded-For: the last hop is the client itself.
    ({"x-forwarded-host": "evil.example", "x-forwarded-for": "10.0.0.4, 198.51.100.7:4444"},
     "10.0.0.0/24", ("http", "func-optouts.azurewebsites.net")),
    ({"x-forwarded-host": "evil.example"}, "10.0.0.0/24", ("http", "func-optouts.azurewebsites.net")),
    ({"x-forwarded-host": "gw.contoso.com", "x-forwarded-for": "[2001:db8::5]:443"}, "2001:db8::/64",
     ("http", "gw.contoso.com")),
    # Trusted, but not a host name: ignored.
    ({"x-forwarded-host": "evil.example/path?x", "x-forwarded-for": "10.0.0.4"}, "10.0.0.4",
     ("http", "func-optouts.azurewebsites.net")),
])
def test_public_origin(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str], trusted: str,
                       expected: tuple[str, str]) -> None:
    monkeypatch.setenv("OPTOUT_TRUSTED_FORWARDERS", trusted)
    assert public_origin(URL, headers) == expected
