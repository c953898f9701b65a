"""Per-request time for 1 and 100 numbers where users feel it, with the ACS emulator (a
separate process) 50 ms away: the HTTP function called in-process as the host calls it,
the opt-out client alone (azure-core's RequestsTransport), and a raw signed `http.client`
POST of the same body.

The operation is a check, with the audit trail off: adds and removes also write the audit
trail, one more round trip (to Table Storage) that is the product's, not overhead.
"""

from __future__ import annotations

import http.client
import json
import os
from email.utils import formatdate
from functools import lru_cache
from urllib.parse import urlsplit

import azure.functions as func

import function_app
from devtools.indexing import indexed_functions
from optouts import runtime
from optouts.domain.phone import NormalizedNumber, normalize
from optouts.providers.acs import signing
from optouts.providers.acs.client import OptOutsClient
from optouts.providers.acs.credentials import decode_access_key, parse_connection_string

from .measure import Figure, interleaved
from .processes import emulator_process

SENDER = "+18005550100"
API_VERSION = "2026-01-23"
CHECK_PATH = f"/sms/optouts:check?api-version={API_VERSION}"


def recipients(count: int, start: int = 0) -> list[str]:
    return [f"+1425{n:07d}" for n in range(start, start + count)]


class SignedCheck:
    """The signed body and headers of a check, built the same way for both references below."""

    def __init__(self, connection_string: str) -> None:
        endpoint, key = parse_connection_string(connection_string)
        self.endpoint = endpoint
        self._host = urlsplit(endpoint).netloc
        self._key = decode_access_key(key)

    def build(self, numbers: list[str]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"from": SENDER, "recipients": [{"to": n} for n in numbers]}).encode()
        date = formatdate(usegmt=True)
        body_hash = signing.content_sha256(body)
        text = signing.string_to_sign("POST", CHECK_PATH, date, self._host, body_hash)
        return body, {
            "Content-Type": "application/json",
            "x-ms-date": date,
            "x-ms-content-sha256": body_hash,
            "Authorization": signing.authorization_header(signing.signature(self._key, text)),
        }


class RawPoster:
    """The reference the budgets are set against: one signed POST over a kept-alive
    `http.client` connection, with the `json` module, and nothing else."""

    def __init__(self, connection_string: str) -> None:
        self._check = SignedCheck(connection_string)
        url = urlsplit(self._check.endpoint)
        self._connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)

    def post(self, numbers: list[str]) -> dict:
        body, headers = self._check.build(numbers)
        self._connection.request("POST", CHECK_PATH, body=body, headers=headers)
        response = self._connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        return answer

    def close(self) -> None:
        self._connection.close()


def host_request(numbers: list[str]) -> func.HttpRequest:
    """The request the Functions host hands a function for a POST of `numbers`."""
    return func.HttpRequest("POST", "http://127.0.0.1:7071/api/optouts/any",
                            headers={"content-type": "application/json"}, body=_request_body(tuple(numbers)))


@lru_cache(maxsize=8)
def _request_body(numbers: tuple[str, ...]) -> bytes:
    # The host hands over the bytes it received: encoding them is the caller's work, not timed.
    return json.dumps({"phoneNumbers": list(numbers)}).encode()


class InProcessGateway:
    """An opt-out function called the way the Functions host calls it."""

    def __init__(self, connection_string: str, function_name: str = "CheckOptOuts") -> None:
        # The budgets are about the path to ACS; the audit trail's own writes are timed apart.
        os.environ.update({"ACS_CONNECTION_STRING": connection_string, "OPTOUT_DEFAULT_SENDER": SENDER,
                           "OPTOUT_AUDIT_WRITES": "false"})
        runtime.reset()
        self._function = indexed_functions(function_app.app)[function_name].get_user_function()

    def post(self, numbers: list[str]) -> None:
        response = self._function(host_request(numbers))
        assert response.status_code == 200, response.get_body()


def normalize_all(numbers: list[str]) -> None:
    for number in numbers:
        assert isinstance(normalize(number, "US"), NormalizedNumber)


def overhead(runs: int, latency_ms: float) -> dict[str, Figure]:
    """Side by side, with the emulator `latency_ms` away (the order of ACS's real round trip):
    the HTTP function, the client alone, and the raw signed POST the budget is set against."""
    figures: dict[str, Figure] = {}
    with emulator_process(latency_ms) as connection_string, \
            OptOutsClient.from_connection_string(connection_string) as client:
        raw = RawPoster(connection_string)
        gateway = InProcessGateway(connection_string)
        try:
            for size in (1, 100):
                numbers = recipients(size)
                measured = interleaved(runs, {
                    f"raw http.client, {size} recipients": lambda: raw.post(numbers),
                    f"OptOutsClient, {size} recipients": lambda: client.check(SENDER, numbers),
                    f"HTTP function in-process, {size} recipients": lambda: gateway.post(numbers),
                })
                figures.update(measured)
        finally:
            raw.close()
    return figures
