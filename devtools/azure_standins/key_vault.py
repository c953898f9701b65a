"""An HTTPS Key Vault stand-in serving secrets the way the real service does for
`azure-keyvault-secrets`: a 401 bearer challenge first, then `GET /secrets/{name}`
for callers presenting an accepted bearer token."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from ._server import JsonHandler, LocalServer

VAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-0000000000aa"


@dataclass
class KeyVaultStats:
    #: Authorized `GET /secrets/{name}` requests, by secret name (found or not).
    secret_reads: Counter[str] = field(default_factory=Counter)
    #: Requests answered with the bearer challenge (no token, or a token not accepted).
    challenges: int = 0
    #: Requests answered with `fail_with_status` (a simulated outage).
    failed: int = 0


@dataclass(frozen=True)
class _SecretVersion:
    version: str
    value: str
    created: int


class KeyVaultStandIn:
    """`with KeyVaultStandIn(accepted_tokens={...}) as vault:` then point a `SecretClient`
    at `vault.url`, trusting `vault.ca_bundle`.

    `accepted_tokens` is a live set: add or remove tokens while running. `set_secret`
    adds a new version (as a rotation does); reads return the latest. `fail_with_status`
    makes every request fail with that status; `stop()` makes the vault unreachable.
    """

    def __init__(self, *, accepted_tokens: set[str] | frozenset[str] = frozenset(),
                 tenant_id: str = DEFAULT_TENANT_ID) -> None:
        self.accepted_tokens: set[str] = set(accepted_tokens)
        self.tenant_id = tenant_id
        self.fail_with_status: int | None = None
        self.stats = KeyVaultStats()
        self._secrets: dict[str, list[_SecretVersion]] = {}
        self._lock = threading.Lock()
        self._server: LocalServer | None = None

    def __enter__(self) -> KeyVaultStandIn:
        self._server = LocalServer(_KeyVaultHandler, owner=self, tls=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def url(self) -> str:
        return self._running().base_url

    @property
    def ca_bundle(self) -> str:
        certificate = self._running().certificate
        assert certificate is not None
        return certificate.ca_bundle

    def set_secret(self, name: str, value: str) -> str:
        """Store a new version of `name`; returns the version id."""
        version = _SecretVersion(uuid.uuid4().hex, value, int(time.time()))
        with self._lock:
            self._secrets.setdefault(name, []).append(version)
        return version.version

    def delete_secret(self, name: str) -> None:
        with self._lock:
            self._secrets.pop(name, None)

    def stop(self) -> None:
        """Stop listening: from now on connections are refused, as to a vault that is down."""
        self._running().stop()

    def _running(self) -> LocalServer:
        if self._server is None:
            raise RuntimeError("use KeyVaultStandIn as a context manager")
        return self._server

    def _latest(self, name: str, version: str | None) -> _SecretVersion | None:
        with self._lock:
            versions = self._secrets.get(name, [])
            if version:
                return next((v for v in versions if v.version == version), None)
            return versions[-1] if versions else None


class _KeyVaultHandler(JsonHandler):
    server_version = "KeyVaultStandIn"

    def do_GET(self) -> None:
        vault: KeyVaultStandIn = self.server.owner  # type: ignore[attr-defined]
        if vault.fail_with_status is not None:
            with vault._lock:
                vault.stats.failed += 1
            self.send_json(vault.fail_with_status, _error("ServiceUnavailable", "The vault is unavailable."))
            return
        if not self._authorized(vault):
            with vault._lock:
                vault.stats.challenges += 1
            challenge = (f'Bearer authorization="https://login.microsoftonline.com/{vault.tenant_id}", '
                         f'resource="{VAULT_RESOURCE}"')
            self.send_json(401, _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
                           {"WWW-Authenticate": challenge})
            return

        url = urlsplit(self.path)
        if not parse_qs(url.query).get("api-version"):
            self.send_json(400, _error("BadParameter", "The api-version query parameter is required."))
            return
        segments = [unquote(part) for part in url.path.strip("/").split("/")]
        if len(segments) not in (2, 3) or segments[0] != "secrets":
            self.send_json(404, _error("NotFound", "No such operation."))
            return
        name = segments[1]
        with vault._lock:
            vault.stats.secret_reads[name] += 1
        secret = vault._latest(name, segments[2] if len(segments) == 3 else None)
        if secret is None:
            self.send_json(404, _error("SecretNotFound",
                                       f"A secret with (name/id) {name} was not found in this key vault."))
            return
        self.send_json(200, {
            "value": secret.value,
            "id": f"{vault.url}/secrets/{name}/{secret.version}",
            "attributes": {"enabled": True, "created": secret.created, "updated": secret.created,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
            "tags": {},
        })

    def _authorized(self, vault: KeyVaultStandIn) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        with vault._lock:
            return token.strip() in vault.accepted_tokens


def _error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}
