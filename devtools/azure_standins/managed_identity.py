"""A managed-identity token endpoint speaking the App Service protocol (the one Azure
Functions uses), as azure-identity's `ManagedIdentityCredential` calls it:

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...[&client_id=...]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

answered with `{"access_token", "expires_on" (epoch seconds), "resource", "token_type"}`.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from ._server import JsonHandler, LocalServer

APP_SERVICE_API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"

#: Variables that would make azure-identity use another credential or another managed
#: identity protocol than this endpoint's; unset them while using the stand-in.
CONFLICTING_ENVIRONMENT = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TENANT_ID",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


@dataclass(frozen=True)
class TokenRequest:
    resource: str | None
    client_id: str | None
    api_version: str | None


class ManagedIdentityStandIn:
    """`with ManagedIdentityStandIn() as identity:` then set `identity.environ()` in the
    process environment so azure-identity finds it.

    `token_for(resource)` is the token this endpoint issues for `resource`, so a test can
    make a vault or the ACS emulator accept it beforehand. With `client_ids`, only those
    user-assigned identities exist: a request must name one (AZURE_CLIENT_ID).
    `fail_with_status` makes every request fail with that status; `stop()` refuses connections.
    """

    def __init__(self, *, client_ids: frozenset[str] | None = None, token_lifetime_seconds: int = 3600) -> None:
        self.client_ids = client_ids
        self.token_lifetime_seconds = token_lifetime_seconds
        self.fail_with_status: int | None = None
        self.identity_header = secrets.token_urlsafe(24)
        self.requests: list[TokenRequest] = []
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: LocalServer | None = None

    def __enter__(self) -> ManagedIdentityStandIn:
        self._server = LocalServer(_TokenHandler, owner=self, tls=False)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("use ManagedIdentityStandIn as a context manager")
        return self._server.base_url + TOKEN_PATH

    def environ(self) -> dict[str, str]:
        """What App Service sets for a function app with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.identity_header}

    def token_for(self, resource: str) -> str:
        with self._lock:
            return self._tokens.setdefault(resource.rstrip("/"), secrets.token_urlsafe(32))

    def issue(self, resource: str, token: str) -> None:
        """Hand out `token` for `resource` from now on (e.g. a JWT another stand-in trusts,
        as AWS STS trusts Entra ID tokens)."""
        with self._lock:
            self._tokens[resource.rstrip("/")] = token

    def stop(self) -> None:
        """Stop listening: later token requests find nothing there."""
        if self._server is not None:
            self._server.stop()

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)


class _TokenHandler(JsonHandler):
    server_version = "ManagedIdentityStandIn"

    def do_GET(self) -> None:
        identity: ManagedIdentityStandIn = self.server.owner  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        request = TokenRequest(query.get("resource"), query.get("client_id"), query.get("api-version"))
        with identity._lock:
            identity.requests.append(request)

        if identity.fail_with_status is not None:
            self.send_json(identity.fail_with_status, _failure(identity.fail_with_status, "Token service failed."))
        elif url.path != TOKEN_PATH:
            self.send_json(404, _failure(404, "Not found."))
        elif self.headers.get("X-IDENTITY-HEADER") != identity.identity_header:
            self.send_json(401, _failure(401, "The X-IDENTITY-HEADER header is missing or wrong."))
        elif request.api_version != APP_SERVICE_API_VERSION or not request.resource:
            self.send_json(400, _failure(400, "api-version 2019-08-01 and resource are required."))
        elif identity.client_ids is not None and request.client_id not in identity.client_ids:
            self.send_json(400, _failure(400, "No managed identity found for the specified ClientId."))
        else:
            expires_on = int(time.time()) + identity.token_lifetime_seconds
            self.send_json(200, {
                "access_token": identity.token_for(request.resource),
                "expires_on": str(expires_on),
                "resource": request.resource,
                "token_type": "Bearer",
                "client_id": request.client_id or "system-assigned",
            })


def _failure(status: int, message: str) -> dict[str, object]:
    return {"statusCode": status, "message": message}
