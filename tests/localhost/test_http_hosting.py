"""The local host's HTTP side against a sample app: routing, keys, invocation."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from devtools.localhost.routing import RouteTemplate

SAMPLE_APP = Path(__file__).parent / "sample_app"
KEY = "sample-function-key"
MASTER = "sample-master-key"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    # The sample app also has a queue trigger, so the host needs real storage behind it.
    settings = {"SAMPLE_QUEUE": "sample-http", "SAMPLE_RECORD_DIR": str(tmp_path_factory.mktemp("records"))}
    with Azurite() as azurite:
        settings["AzureWebJobsStorage"] = azurite.connection_string
        with LocalHost(app_dir=SAMPLE_APP, function_keys={"default": KEY}, master_key=MASTER,
                       settings=settings) as running:
            yield running


def request(host: LocalHost, method: str, path: str, *, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    port = int(host.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def keyed(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"x-functions-key": KEY, **(extra or {})}


def test_literal_route_beats_parameter_routes(host: LocalHost) -> None:
    assert request(host, "GET", "/sample/items/special", headers=keyed())[2] == b"special"
    assert request(host, "GET", "/sample/ITEMS/Special", headers=keyed())[2] == b"special"


def test_constraint_and_route_params(host: LocalHost) -> None:
    status, headers, body = request(host, "GET", "/sample/items/42?q=x", headers=keyed())
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"id": "42", "q": "x"}
    status, _, body = request(host, "GET", "/sample/items/forty-two", headers=keyed())
    assert json.loads(body)["name"] == "forty-two"


def test_post_body_status_and_headers_round_trip(host: LocalHost) -> None:
    status, headers, body = request(host, "POST", "/sample/items/thing", body=b"hello", headers=keyed())
    assert status == 201
    assert headers["x-sample"] == "yes"
    assert json.loads(body) == {"name": "thing", "method": "POST", "body": "hello"}


def test_keys_by_header_or_code_and_auth_levels(host: LocalHost) -> None:
    assert request(host, "GET", "/sample/items/1")[0] == 401
    assert request(host, "GET", "/sample/items/1", headers={"x-functions-key": "wrong"})[0] == 401
    assert request(host, "GET", f"/sample/items/1?code={KEY}")[0] == 200
    assert request(host, "GET", "/sample/items/1", headers={"x-functions-key": MASTER})[0] == 200
    assert request(host, "GET", "/sample/admin/ping", headers=keyed())[0] == 401
    assert request(host, "GET", "/sample/admin/ping", headers={"x-functions-key": MASTER})[2] == b"pong"
    status, _, body = request(host, "GET", "/sample/files/a/b/c.txt")  # anonymous
    assert (status, body) == (200, b"a/b/c.txt")
    assert request(host, "GET", "/sample/boom")[2] == b""  # 401 answers carry no body


def test_unknown_routes_and_methods_are_404(host: LocalHost) -> None:
    assert request(host, "GET", "/sample/nothing/here", headers=keyed())[0] == 404
    assert request(host, "GET", "/other/items/1", headers=keyed())[0] == 404
    assert request(host, "DELETE", "/sample/items/1", headers=keyed())[0] == 404


def test_async_functions_run(host: LocalHost) -> None:
    status, _, body = request(host, "POST", "/sample/async/echo", body=b"ping", headers=keyed())
    assert (status, body) == (200, b"ping")


def test_a_raising_function_is_500_with_an_empty_body(host: LocalHost) -> None:
    status, _, body = request(host, "GET", "/sample/boom", headers=keyed())
    assert (status, body) == (500, b"")


def test_oversized_body_is_413(host: LocalHost) -> None:
    port = int(host.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/sample/items/big")
        connection.putheader("x-functions-key", KEY)
        connection.putheader("Content-Length", str(200 * 1024 * 1024))
        connection.endheaders()
        assert connection.getresponse().status == 413
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("a/{b?}", "a", {}),
        ("a/{b?}", "a/x", {"b": "x"}),
        ("a/{id:int:min(5)}", "a/7", {"id": "7"}),
        ("a/{id:int:min(5)}", "a/3", None),
        ("a/{id:guid}", "a/not-a-guid", None),
        ("a/{name:alpha:maxlength(3)}", "a/abcd", None),
        ("a/{*rest}", "a/x/y", {"rest": "x/y"}),
        ("a/{b}", "a/x%2By", {"b": "x+y"}),
    ],
)
def test_route_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate(template).match(path) == expected


@pytest.mark.parametrize("template", ["a/{b:nosuch}", "a/{*rest}/c", "a/{b"])
def test_unsupported_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        RouteTemplate(template)
