"""With APPLICATIONINSIGHTS_CONNECTION_STRING set, the gateway exports its spans and metrics
through the Azure Monitor distro, signed in with the app's managed identity as infra configures
it (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=ClientId=...;Authorization=AAD). Checked in a
fresh process against a local HTTPS ingestion stand-in and a managed-identity stand-in."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.azure_standins import ManagedIdentityStandIn
from devtools.azure_standins._server import JsonHandler, LocalServer
from devtools.azure_standins.managed_identity import CONFLICTING_ENVIRONMENT

REPO = Path(__file__).resolve().parent.parent
CLIENT_ID = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"
MONITOR_RESOURCE = "https://monitor.azure.com"


class _Ingestion(JsonHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        owner: IngestionStandIn = self.server.owner  # type: ignore[attr-defined]
        items = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        items = [item for entry in items for item in (entry if isinstance(entry, list) else [entry])]
        with owner.lock:
            owner.posts.append({"path": self.path, "authorization": self.headers.get("Authorization"), "items": items})
        self.send_json(200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})


class IngestionStandIn:
    """Application Insights' track endpoint over TLS: records what it is sent, and by whom."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self._server = LocalServer(_Ingestion, owner=self, tls=True)

    @property
    def url(self) -> str:
        return self._server.base_url + "/"

    @property
    def ca_bundle(self) -> str:
        assert self._server.certificate is not None
        return str(self._server.certificate.certificate_path)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def ingestion() -> Iterator[IngestionStandIn]:
    stand_in = IngestionStandIn()
    try:
        yield stand_in
    finally:
        stand_in.close()


SCRIPT = """
from opentelemetry import metrics, trace
from optouts import runtime, telemetry
runtime.start()
with telemetry.operation_span("remove", "+1800***0100", 3):
    telemetry.record_numbers("remove", {"succeeded": 2, "invalid": 1})
trace.get_tracer_provider().force_flush()
metrics.get_meter_provider().force_flush()
print("telemetry:", runtime._telemetry)
"""


def test_spans_and_metrics_reach_application_insights_with_the_managed_identity(
    ingestion: IngestionStandIn, tmp_path: Path
) -> None:
    with ManagedIdentityStandIn(client_ids=frozenset({CLIENT_ID})) as identity:
        env = {name: value for name, value in os.environ.items()
               if name not in CONFLICTING_ENVIRONMENT and not name.startswith(("ACS_", "OPTOUT_", "AZURE_"))}
        env.update({
            **identity.environ(),
            "APPLICATIONINSIGHTS_CONNECTION_STRING":
                f"InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint={ingestion.url}",
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={CLIENT_ID};Authorization=AAD",
            # No call home to Microsoft's statsbeat endpoint, no offline storage left behind.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_STORAGE_DIRECTORY": str(tmp_path),
            "REQUESTS_CA_BUNDLE": ingestion.ca_bundle,
            # The distro's default sampler is rate-limited (adaptive); the test needs every span.
            "OTEL_TRACES_SAMPLER": "always_on",
            "ACS_CONNECTION_STRING": "endpoint=https://x.communication.azure.com/;accesskey=cHc=",
            "OPTOUT_DEFAULT_SENDER": "+18005550100",
        })
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        token = identity.token_for(MONITOR_RESOURCE)
        token_requests = list(identity.requests)

    assert done.returncode == 0, done.stderr
    assert "telemetry: azure-monitor" in done.stdout, done.stdout + done.stderr
    assert token_requests and all(r.client_id == CLIENT_ID for r in token_requests)
    with ingestion.lock:
        posts = list(ingestion.posts)
    assert posts, done.stderr
    assert all(post["authorization"] == f"Bearer {token}" for post in posts)
    sent = json.dumps([post["items"] for post in posts])
    assert "optouts.remove" in sent  # the span
    assert "optouts.numbers.processed" in sent  # the metric
    assert "+18005550100" not in sent
    kinds = {item.get("data", {}).get("baseType") for post in posts for item in post["items"]}
    assert {"RemoteDependencyData", "MetricData"} <= kinds
