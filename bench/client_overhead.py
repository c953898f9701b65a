"""Per-request overhead for 1 and 100 numbers, zero injected latency: the HTTP function
called in-process as the host calls it, the opt-out client alone, and a raw signed
`http.client` POST of the same body, all to the ACS emulator (a separate process).

The operation is a check: adds and removes also write the audit trail, one more
round trip (to Table Storage) that is the product's, not overhead. Normalizing the
same numbers with `phonenumbers` alone is timed alongside, because it is the part of
the gateway's work that no transport can remove.
"""

from __future__ import annotations

import http.client
import json
from email.utils import formatdate
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from optouts.domain.phone import NormalizedNumber, normalize
from optouts.providers.acs import OptOutsClient, parse_connection_string, signing
from optouts.providers.acs.credentials import decode_access_key

from .measure import Figure, interleaved
from .processes import emulator_process

if TYPE_CHECKING:
    import azure.functions as func

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


class TransportAlone:
    """The same signed POST through the gateway's own transport, with no azure-core pipeline:
    the leanest exchange on this stack, shown beside the budgets' `http.client` reference."""

    def __init__(self, connection_string: str) -> None:
        from optouts.providers.acs.transport import KeepAliveTransport

        self._check = SignedCheck(connection_string)
        self._transport = KeepAliveTransport()

    def post(self, numbers: list[str]) -> dict:
        from azure.core.rest import HttpRequest

        body, headers = self._check.build(numbers)
        response = self._transport.send(HttpRequest("POST", self._check.endpoint + CHECK_PATH, headers=headers,
                                                    content=body))
        answer = json.loads(response.content)
        assert response.status_code == 200, answer
        return answer

    def close(self) -> None:
        self._transport.close()


class BarePipeline:
    """A plain azure-core pipeline over the gateway's transport, and nothing of the
    client's own: with the signing policy alone (the least a client built on azure-core
    does), or with the standard policies the Azure SDK guidelines prescribe as well."""

    def __init__(self, connection_string: str, *, standard_policies: bool) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            HeadersPolicy,
            HttpLoggingPolicy,
            RequestIdPolicy,
            RetryPolicy,
            UserAgentPolicy,
        )

        from optouts.providers.acs.credentials import StaticAccessKey
        from optouts.providers.acs.policies import HmacSigningPolicy
        from optouts.providers.acs.transport import KeepAliveTransport

        self._endpoint, key = parse_connection_string(connection_string)
        signing = HmacSigningPolicy(StaticAccessKey(key))
        policies = [
            RequestIdPolicy(), HeadersPolicy(), UserAgentPolicy(sdk_moniker="bench/0"), RetryPolicy(), signing,
            HttpLoggingPolicy(),
        ] if standard_policies else [signing]
        self._client: PipelineClient = PipelineClient(
            base_url=self._endpoint, policies=policies, transport=KeepAliveTransport()
        )

    def post(self, numbers: list[str]) -> dict:
        from azure.core.rest import HttpRequest

        body = json.dumps({"from": SENDER, "recipients": [{"to": n} for n in numbers]}).encode()
        request = HttpRequest("POST", self._endpoint + CHECK_PATH,
                              headers={"Content-Type": "application/json"}, content=body)
        response = self._client.send_request(request)
        assert response.status_code == 200, response.text()
        return json.loads(response.text())


def host_request(numbers: list[str]) -> func.HttpRequest:
    """The request the Functions host hands a function for a POST of `numbers`."""
    import azure.functions as func

    return func.HttpRequest("POST", "http://127.0.0.1:7071/api/optouts/any",
                            headers={"content-type": "application/json"}, body=_request_body(tuple(numbers)))


@lru_cache(maxsize=8)
def _request_body(numbers: tuple[str, ...]) -> bytes:
    # The host hands over the bytes it received: encoding them is the caller's work, not timed.
    return json.dumps({"phoneNumbers": list(numbers)}).encode()


class ThinnestFunction:
    """The least any HTTP function forwarding to ACS does: read the JSON body, make one
    call through the standard azure-core pipeline, answer with JSON. No validation, no
    per-number results: a floor for the gateway, not an alternative to it."""

    def __init__(self, pipeline: BarePipeline) -> None:
        self._pipeline = pipeline

    def post(self, numbers: list[str]) -> None:
        import azure.functions as func

        answer = self._pipeline.post(json.loads(host_request(numbers).get_body())["phoneNumbers"])
        response = func.HttpResponse(json.dumps(answer, separators=(",", ":")), mimetype="application/json")
        assert response.status_code == 200


class InProcessGateway:
    """An opt-out function called the way the Functions host calls it."""

    def __init__(self, connection_string: str, function_name: str = "CheckOptOuts") -> None:
        import os

        import function_app
        from devtools.indexing import indexed_functions
        from optouts import runtime

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


def overhead(runs: int) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    with emulator_process() as connection_string, OptOutsClient.from_connection_string(connection_string) as client:
        raw = RawPoster(connection_string)
        transport_alone = TransportAlone(connection_string)
        signing_only = BarePipeline(connection_string, standard_policies=False)
        standard = BarePipeline(connection_string, standard_policies=True)
        thinnest = ThinnestFunction(standard)
        gateway = InProcessGateway(connection_string)
        try:
            for size in (1, 100):
                numbers = recipients(size)
                measured = interleaved(runs, {
                    f"raw http.client, {size} recipients": lambda: raw.post(numbers),
                    f"the gateway's transport alone, {size} recipients": lambda: transport_alone.post(numbers),
                    f"azure-core, signing policy only, {size} recipients": lambda: signing_only.post(numbers),
                    f"azure-core, standard policies and signing, {size} recipients": lambda: standard.post(numbers),
                    f"thinnest HTTP function on that pipeline, {size} recipients": lambda: thinnest.post(numbers),
                    f"OptOutsClient, {size} recipients": lambda: client.check(SENDER, numbers),
                    f"HTTP function in-process, {size} recipients": lambda: gateway.post(numbers),
                    f"normalization alone, {size} recipients": lambda: normalize_all(numbers),
                })
                figures.update(measured)
        finally:
            raw.close()
            transport_alone.close()
    return figures
