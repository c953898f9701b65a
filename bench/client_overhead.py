"""The gateway and the opt-out client against a raw `http.client` POST, all to the ACS emulator.

1. Per-call overhead for 1 and 100 recipients, zero injected latency: the HTTP function
   called in-process as the host calls it, the client alone, and the raw POST.
2. Bulk: 10,000 recipients at 50 ms injected latency and concurrency 8, against the
   ideal ceil(chunks / concurrency) x latency, and the naive one-chunk-at-a-time time.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from email.utils import formatdate
from urllib.parse import urlsplit

from devtools.acs_emulator import AcsEmulator, FaultConfig
from optouts.acs import OptOutsClient, parse_connection_string, signing
from optouts.acs.credentials import decode_access_key

from .measure import Figure, interleaved, summarize, time_call

SENDER = "+18005550100"
API_VERSION = "2026-01-23"


def recipients(count: int, start: int = 0) -> list[str]:
    return [f"+1425{n:07d}" for n in range(start, start + count)]


class RawPoster:
    """The floor: one signed POST over a kept-alive `http.client` connection."""

    def __init__(self, connection_string: str) -> None:
        endpoint, key = parse_connection_string(connection_string)
        url = urlsplit(endpoint)
        self._host = url.netloc
        self._key = decode_access_key(key)
        self._connection = http.client.HTTPConnection(url.hostname, url.port)

    def post(self, numbers: list[str]) -> dict:
        body = json.dumps({"from": SENDER, "recipients": [{"to": n} for n in numbers]}).encode()
        path = f"/sms/optouts:remove?api-version={API_VERSION}"
        date = formatdate(usegmt=True)
        body_hash = signing.content_sha256(body)
        text = signing.string_to_sign("POST", path, date, self._host, body_hash)
        headers = {
            "Content-Type": "application/json",
            "x-ms-date": date,
            "x-ms-content-sha256": body_hash,
            "Authorization": signing.authorization_header(signing.signature(self._key, text)),
        }
        self._connection.request("POST", path, body=body, headers=headers)
        response = self._connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        return answer

    def close(self) -> None:
        self._connection.close()


class InProcessGateway:
    """The RemoveOptOuts function called the way the Functions host calls it."""

    def __init__(self, connection_string: str) -> None:
        import os

        import function_app
        from devtools.indexing import indexed_functions
        from optouts import runtime

        os.environ.update({"ACS_CONNECTION_STRING": connection_string, "OPTOUT_DEFAULT_SENDER": SENDER})
        runtime.reset()
        self._remove = indexed_functions(function_app.app)["RemoveOptOuts"].get_user_function()

    def post(self, numbers: list[str]) -> None:
        import azure.functions as func

        request = func.HttpRequest(
            "POST", "http://127.0.0.1:7071/api/optouts/remove",
            headers={"content-type": "application/json"},
            body=json.dumps({"phoneNumbers": numbers}).encode(),
        )
        response = self._remove(request)
        assert response.status_code == 200, response.get_body()


def overhead(runs: int) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    with AcsEmulator() as emulator, OptOutsClient.from_connection_string(emulator.connection_string) as client:
        raw = RawPoster(emulator.connection_string)
        gateway = InProcessGateway(emulator.connection_string)
        try:
            for size in (1, 100):
                numbers = recipients(size)
                measured = interleaved(runs, {
                    f"raw http.client, {size} recipients": lambda: raw.post(numbers),
                    f"OptOutsClient, {size} recipients": lambda: client.remove(SENDER, numbers),
                    f"HTTP function in-process, {size} recipients": lambda: gateway.post(numbers),
                })
                figures.update(measured)
        finally:
            raw.close()
    return figures


def bulk(runs: int, count: int = 10_000, latency: float = 0.05, concurrency: int = 8) -> dict[str, object]:
    numbers = recipients(count)
    chunks = math.ceil(count / 100)
    ideal = math.ceil(chunks / concurrency) * latency
    with AcsEmulator(faults=FaultConfig(latency_seconds=latency)) as emulator:
        with OptOutsClient.from_connection_string(emulator.connection_string, max_concurrency=concurrency) as client:
            client.remove(SENDER, numbers[:100])  # warm the connection pool
            samples = [time_call(lambda: client.remove(SENDER, numbers)) for _ in range(runs)]
        raw = RawPoster(emulator.connection_string)
        try:
            started = time.perf_counter()
            for start in range(0, count, 100):
                raw.post(numbers[start : start + 100])
            naive = time.perf_counter() - started
        finally:
            raw.close()
    figure = summarize(f"remove {count} recipients, {latency * 1e3:.0f} ms latency, concurrency {concurrency}", samples)
    return {"figure": figure, "ideal": ideal, "naive_sequential": naive}
