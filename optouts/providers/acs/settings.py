"""How the gateway reaches Azure Communication Services: the ACS_* app settings.

Apart from the gateway's own settings (optouts.config), in the manner of botocore's
`Config`: each provider reads its own settings (`from_environ`) and says what of them may be
shown (`describe`). Reading never raises at import time; a missing or broken setting is a
`SettingsError` naming it, when a function first needs ACS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Reused rather than repeated: one way to read a text, flag or number setting.
from optouts.config import EnvironSettings, _flag, _number, _Reader, _text

DEFAULT_API_VERSION = "2026-01-23"
DEFAULT_SECRET_CACHE_SECONDS = 300.0
KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("


class AuthMode(str, enum.Enum):
    CONNECTION_STRING = "connection-string"
    KEY_VAULT = "key-vault"
    MANAGED_IDENTITY = "managed-identity"


@dataclass(frozen=True)
class AcsSettings(EnvironSettings):
    auth_mode: AuthMode
    connection_string: str | None
    endpoint: str | None
    key_vault_url: str | None
    connection_string_secret_name: str | None
    secret_cache_seconds: float
    api_version: str
    allow_insecure_bearer: bool
    allow_insecure_http: bool

    @classmethod
    def _read(cls, env: _Reader) -> AcsSettings:
        connection_string = _text(env, "ACS_CONNECTION_STRING")
        endpoint = _text(env, "ACS_ENDPOINT")
        key_vault_url = _text(env, "KEY_VAULT_URL")
        secret_name = _text(env, "ACS_CONNECTION_STRING_SECRET_NAME")

        auth_mode = AuthMode.CONNECTION_STRING
        if connection_string is not None:
            if connection_string.startswith(KEY_VAULT_REFERENCE_PREFIX):
                env.problem(
                    "ACS_CONNECTION_STRING",
                    "is an unresolved Key Vault reference; check that the app's identity "
                    "can read the secret and that the reference points to an existing secret",
                )
            elif problem := connection_string_problem(connection_string):
                env.problem("ACS_CONNECTION_STRING", problem)
        elif key_vault_url is not None or secret_name is not None:
            if key_vault_url is None:
                env.problem("KEY_VAULT_URL", "is required with ACS_CONNECTION_STRING_SECRET_NAME")
            if secret_name is None:
                env.problem("ACS_CONNECTION_STRING_SECRET_NAME", "is required with KEY_VAULT_URL")
            if key_vault_url is not None and not key_vault_url.lower().startswith("https://"):
                env.problem("KEY_VAULT_URL", "must start with https://")
            auth_mode = AuthMode.KEY_VAULT
        elif endpoint is not None:
            auth_mode = AuthMode.MANAGED_IDENTITY
            if not endpoint.lower().startswith(("https://", "http://")):
                env.problem("ACS_ENDPOINT", "must start with https://")
        else:
            env.problem(
                "ACS_CONNECTION_STRING",
                "no way to reach ACS is configured: set ACS_CONNECTION_STRING, "
                "or KEY_VAULT_URL with ACS_CONNECTION_STRING_SECRET_NAME, or ACS_ENDPOINT "
                "for managed identity",
            )
        return cls(
            auth_mode=auth_mode,
            connection_string=connection_string,
            endpoint=endpoint,
            key_vault_url=key_vault_url,
            connection_string_secret_name=secret_name,
            secret_cache_seconds=_number(env, "ACS_SECRET_CACHE_SECONDS", DEFAULT_SECRET_CACHE_SECONDS, minimum=0),
            api_version=_text(env, "ACS_API_VERSION") or DEFAULT_API_VERSION,
            allow_insecure_bearer=_flag(env, "ACS_ALLOW_INSECURE_BEARER"),
            allow_insecure_http=_flag(env, "ACS_ALLOW_INSECURE_HTTP"),
        )

    def describe(self) -> dict[str, object]:
        """What /api/health may show: how ACS is reached, never a secret."""
        return {
            "authMode": self.auth_mode.value,
            "acsEndpoint": self.endpoint if self.auth_mode is AuthMode.MANAGED_IDENTITY else None,
            "keyVaultUrl": self.key_vault_url,
            "apiVersion": self.api_version,
        }


def connection_string_problem(value: str) -> str | None:
    """The shape `endpoint=https://...;accesskey=...`, checked without decoding the key
    (the client does that when it is built); the message never quotes the value."""
    parts = {}
    for part in value.split(";"):
        name, separator, text = part.partition("=")
        if separator:
            parts[name.strip().lower()] = text.strip()
    endpoint = parts.get("endpoint", "")
    if not endpoint or not parts.get("accesskey"):
        return "must have the form endpoint=https://<resource>.communication.azure.com/;accesskey=<key>"
    if not endpoint.lower().startswith(("https://", "http://")):
        return "its endpoint must start with https://"
    return None
