"""A gateway running as in Azure, on 127.0.0.1: the local Functions host serving the app,
the ACS emulator (or a dead address) behind it, Azurite for the queue trigger.

Only one host can run at a time: the app's settings are process-wide (as in a worker).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from devtools.localhost import LocalHost
from devtools.localhost.http_server import HttpLimits
from optouts import runtime

from ..conftest import OTHER_SENDER, SENDER

KEY = "hardening-function-key"
#: Every bounded wait on one answer; far above any budget the gateway is given.
ANSWER_TIMEOUT_SECONDS = 120
PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "code", "traceId"})


@contextmanager
def running_gateway(acs_connection_string: str, storage: str, *, limits: HttpLimits | None = None,
                    **settings: str) -> Iterator[LocalHost]:
    values = {
        "AzureWebJobsStorage": storage,
        "ACS_CONNECTION_STRING": acs_connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
        # These tests count answers and terminal states under load and faults; the change events the
        # indexer would also write to the same Azurite (one per number) only slow them down. Change
        # events have their own tests (tests/test_change_events.py).
        "OPTOUT_EVENTS_SINKS": "none",
        **settings,
    }
    runtime.reset()
    try:
        with LocalHost(app_dir=".", app_module="function_app", port=0, function_keys={"default": KEY},
                       settings=values, limits=limits) as host:
            yield host
    finally:
        runtime.reset()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """Plain http.client over one kept-alive connection, so requests can carry any bytes,
    header or path; reconnects when the server closed the connection."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._address = (host, int(port))
        self._connection: http.client.HTTPConnection | None = None
        self.sent = 0

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, *, key: str | None = KEY) -> Answer:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers.setdefault("x-functions-key", key)
        for attempt in range(2):
            connection = self._connect()
            try:
                connection.request(method, path, body=body, headers=all_headers)
                response = connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.BadStatusLine):
                # The server may close a kept-alive connection between requests; one fresh try.
                self.close()
                if attempt:
                    raise
                continue
            if response.will_close:
                self.close()
            self.sent += 1
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        raise AssertionError("unreachable")

    def post_json(self, path: str, payload: Any, **kwargs: Any) -> Answer:
        return self.request("POST", path, json.dumps(payload).encode(), {"content-type": "application/json"}, **kwargs)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(*self._address, timeout=ANSWER_TIMEOUT_SECONDS)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def assert_problem(answer: Answer, status: int | None = None, code: str | None = None) -> dict[str, Any]:
    """The documented error shape: problem+json whose `status` is the HTTP status."""
    if status is not None:
        assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.content_type == "application/problem+json", (answer.status, answer.headers)
    problem = answer.json()
    assert PROBLEM_FIELDS <= set(problem), problem
    assert problem["status"] == answer.status
    assert isinstance(problem["detail"], str) and isinstance(problem["code"], str)
    if code is not None:
        assert problem["code"] == code, problem
    return problem


def assert_no_server_error(answer: Answer) -> None:
    # The one documented 5xx: listing an ACS sender's opt-out list, which ACS has no API for.
    if answer.status == 501 and b'"code":"ListingNotSupported"' in answer.body.replace(b" ", b""):
        return
    assert answer.status < 500, (answer.status, answer.body[:300])
