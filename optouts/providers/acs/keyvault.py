"""ACS access key pulled from Key Vault at runtime, so a rotated key is picked up
without a restart.

The secret holds the whole ACS connection string. It is read when the client is
built (the endpoint is needed then), kept in memory for ACS_SECRET_CACHE_SECONDS,
and read again early when ACS rejects the key it signed with: that is how a
rotation (new key in ACS, new secret version in the vault) reaches a running
worker. Errors name the vault and the secret, never the secret's value.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient

from optouts.azure.identity import BOUNDED_PIPELINE_OPTIONS, gateway_credential
from optouts.config import SettingsError
from optouts.providers.acs import InvalidConnectionStringError, OptOutsClient
from optouts.providers.acs.credentials import decode_access_key, parse_connection_string
from optouts.providers.acs.errors import CredentialUnavailableError
from optouts.providers.acs.settings import AcsSettings

_logger = logging.getLogger(__name__)

#: After a 401-driven read found the vault still holding the rejected key, further
#: 401s for that key wait this long (or the cache period, if shorter) before reading
#: again: the vault is not re-read once per failing request while it lags behind ACS.
REJECTED_KEY_RECHECK_SECONDS = 30.0


class KeyVaultUnavailableError(CredentialUnavailableError, ClientAuthenticationError):
    """The connection string could not be read from Key Vault.

    Also a `ClientAuthenticationError` because azure-core's retry policy hands those
    straight back: the vault read has retried already, and retrying the ACS call
    around it would only multiply vault reads while the caller waits.
    """


class KeyVaultAccessKey:
    """The ACS access key from a Key Vault secret; implements `AccessKeyCredential`.

    Thread-safe. One lock serializes vault reads, so when many requests see the same
    401 at once, the first re-reads the secret and the others find the key already
    moved past the one they were refused with.
    """

    def __init__(
        self,
        secret_client: SecretClient,
        secret_name: str,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_client = secret_client
        self._secret_name = secret_name
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._endpoint: str | None = None
        self._key: bytes | None = None
        self._read_at = 0.0
        # When a 401-driven read last found the rejected key still in the vault.
        self._stale_key_confirmed_at: float | None = None

    @property
    def source(self) -> str:
        """Where the key comes from, for messages: names only."""
        return f"secret '{self._secret_name}' in Key Vault {self._secret_client.vault_url}"

    def endpoint(self) -> str:
        """The ACS endpoint from the secret, reading the secret if it was never read."""
        with self._lock:
            if self._endpoint is None:
                self._read_locked()
            assert self._endpoint is not None
            return self._endpoint

    def get_key(self) -> bytes:
        with self._lock:
            if self._key is None or self._clock() - self._read_at >= self._cache_seconds:
                self._read_locked()
            assert self._key is not None
            return self._key

    def refresh_after_rejection(self, rejected_key: bytes) -> bool:
        with self._lock:
            if self._key != rejected_key:
                # Someone already refreshed past the rejected key (or the cache did).
                return True
            recheck_after = min(REJECTED_KEY_RECHECK_SECONDS, self._cache_seconds)
            confirmed_at = self._stale_key_confirmed_at
            if confirmed_at is not None and self._clock() - confirmed_at < recheck_after:
                return False
            self._read_locked()
            if self._key == rejected_key:
                _logger.warning("ACS rejected the access key and %s still holds the same key", self.source)
                self._stale_key_confirmed_at = self._clock()
                return False
            _logger.info("ACS rejected the access key; re-read %s and found a new key", self.source)
            return True

    def _read_locked(self) -> None:
        connection_string = self._fetch_secret()
        try:
            endpoint, access_key = parse_connection_string(connection_string)
            key = decode_access_key(access_key)
        except InvalidConnectionStringError as error:
            raise KeyVaultUnavailableError(f"{self.source} is not a valid ACS connection string: {error}") from None
        if self._endpoint is not None and endpoint != self._endpoint:
            # The client was built for the old endpoint; only a restart moves it.
            _logger.warning("%s now names endpoint %s, but this worker keeps using %s until restarted",
                            self.source, endpoint, self._endpoint)
        else:
            self._endpoint = endpoint
        self._key = key
        self._read_at = self._clock()
        self._stale_key_confirmed_at = None

    def _fetch_secret(self) -> str:
        try:
            value = self._secret_client.get_secret(self._secret_name).value
        except ResourceNotFoundError:
            raise KeyVaultUnavailableError(f"{self.source} does not exist") from None
        except ClientAuthenticationError as error:
            raise KeyVaultUnavailableError(
                f"could not read {self.source}: the gateway's identity got no token or was refused "
                f"({type(error).__name__}{_status_suffix(error)})"
            ) from None
        except HttpResponseError as error:
            raise KeyVaultUnavailableError(
                f"could not read {self.source}: the vault answered{_status_suffix(error)}"
            ) from None
        except ServiceRequestError as error:
            raise KeyVaultUnavailableError(
                f"could not read {self.source}: the vault is unreachable ({type(error).__name__})"
            ) from None
        except AzureError as error:
            raise KeyVaultUnavailableError(f"could not read {self.source} ({type(error).__name__})") from None
        except ValueError:
            # The SDK's check that the challenge's resource matches the vault's host failed.
            raise KeyVaultUnavailableError(
                f"could not read {self.source}: the vault's authentication challenge names another resource"
            ) from None
        if not value:
            raise KeyVaultUnavailableError(f"{self.source} is empty")
        return value


def build_key_vault_client(settings: AcsSettings, **options: Any) -> OptOutsClient:
    """An `OptOutsClient` whose access key comes from Key Vault.

    Reads the secret now, because the client needs the endpoint it holds; raises
    `CredentialUnavailableError` when that read fails.
    """
    assert settings.key_vault_url is not None and settings.connection_string_secret_name is not None
    credential = KeyVaultAccessKey(
        secret_client(settings.key_vault_url, gateway_credential()),
        settings.connection_string_secret_name,
        cache_seconds=settings.secret_cache_seconds,
    )
    return OptOutsClient(credential.endpoint(), credential, **options)


def secret_client(vault_url: str, credential: TokenCredential) -> SecretClient:
    """A `SecretClient` for `vault_url`, which must be https.

    The SDK checks that the resource in the vault's auth challenge is a parent domain
    of the vault's host, so a token is never handed to a look-alike host. A loopback
    address has no domain to compare, so the check is off for loopback vaults only:
    that is the local stand-in the tests and local development run against.
    """
    parts = urlsplit(vault_url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise SettingsError("KEY_VAULT_URL", "must be an https:// URL such as https://NAME.vault.azure.net")
    return SecretClient(
        vault_url,
        credential,
        verify_challenge_resource=not _is_loopback(parts.hostname),
        # A vault read holds up its caller (at build time, every caller): fail in seconds.
        **BOUNDED_PIPELINE_OPTIONS,
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status_suffix(error: AzureError) -> str:
    status = getattr(error, "status_code", None)
    return f" {status}" if status is not None else ""
