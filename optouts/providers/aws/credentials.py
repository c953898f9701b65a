"""AWS credentials without a long-lived secret: Entra ID web identity federation.

The function's managed identity gets an Entra ID token for an audience that an AWS IAM
OIDC provider trusts (by default `api://AzureADTokenExchange`), and STS
`AssumeRoleWithWebIdentity` exchanges it for the role's temporary credentials. The
exchange itself is botocore's (`AssumeRoleWithWebIdentityCredentialFetcher`, fed by a
token loader instead of a token file); botocore's `RefreshableCredentials` re-runs it
before the credentials expire (15 minutes ahead without blocking, 10 minutes ahead
blocking), so no request ever signs with expired keys.

The fallback, where federation is not possible, is an access key pair in a Key Vault
secret, re-read every OPTOUT_AWS_SECRET_CACHE_SECONDS so that a rotated key is picked up.
With neither, boto3's standard chain applies (environment, profile...).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import botocore.session
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleWithWebIdentityCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
    RefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError
from dateutil.tz import tzlocal

from optouts.providers.aws.errors import AwsAuthenticationError, AwsCredentialsUnavailableError
from optouts.providers.aws.settings import AwsCredentialMode, AwsSettings

_logger = logging.getLogger(__name__)

#: STS answers that mean the trust between Entra ID and AWS is misconfigured (not transient).
_TRUST_ERRORS = frozenset({"AccessDenied", "InvalidIdentityToken", "IDPRejectedClaim", "ExpiredTokenException",
                           "MalformedPolicyDocument", "RegionDisabledException", "ValidationError"})
#: A Key Vault key pair is re-read this long before the cached copy's nominal expiry.
_KEY_VAULT_REFRESH_WINDOW = timedelta(minutes=5)


class WebIdentityRejectedError(AwsAuthenticationError):
    """STS refused the Entra ID token or the role: the trust policy, the IAM OIDC
    provider's audience or the role ARN needs an operator."""


class EntraTokenLoader:
    """Hands botocore an Entra ID token for `audience` each time it (re)assumes the role.
    azure-identity caches the token and renews it before it expires."""

    def __init__(self, credential: TokenCredential, audience: str) -> None:
        self._credential = credential
        self._scope = audience if audience.endswith("/.default") else audience.rstrip("/") + "/.default"
        self.audience = audience

    def __call__(self) -> str:
        try:
            return self._credential.get_token(self._scope).token
        except AzureError as error:
            raise AwsCredentialsUnavailableError(
                f"could not get an Entra ID token for {self.audience} from the managed identity "
                f"({type(error).__name__})") from None


class _NoCache(dict):  # type: ignore[type-arg]
    """The fetcher's cache would return credentials still valid for its own 15-minute
    window even when RefreshableCredentials asks for new ones: every refresh calls STS."""

    def __contains__(self, key: object) -> bool:
        return False


class _Fixed(CredentialProvider):  # type: ignore[misc]  # botocore ships no type hints
    def __init__(self, credentials: Credentials, method: str) -> None:
        super().__init__()
        self.METHOD = method
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def web_identity_credentials(
    session: botocore.session.Session,
    settings: AwsSettings,
    token_loader: Callable[[], str],
    *,
    time_fetcher: Callable[[], datetime] | None = None,
) -> DeferredRefreshableCredentials:
    """Credentials for `settings.role_arn`, assumed on first use and refreshed before expiry."""
    if settings.role_arn is None:
        raise ValueError("web identity federation needs OPTOUT_AWS_ROLE_ARN")

    def create_sts_client(service_name: str, config: Config | None = None, **kwargs: Any) -> Any:
        return session.create_client(service_name, region_name=settings.region,
                                     endpoint_url=settings.sts_endpoint_url, config=_bounded(settings, config))

    fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=create_sts_client,
        web_identity_token_loader=token_loader,
        role_arn=settings.role_arn,
        extra_args={"RoleSessionName": settings.role_session_name, "DurationSeconds": settings.session_seconds},
        cache=_NoCache(),
    )

    def refresh() -> dict[str, Any]:
        try:
            credentials: dict[str, Any] = fetcher.fetch_credentials()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            if code in _TRUST_ERRORS:
                raise WebIdentityRejectedError(
                    f"STS refused to let the gateway assume {settings.role_arn} with its Entra ID token ({code}); "
                    "check the IAM OIDC provider's audience and the role's trust policy") from None
            raise AwsCredentialsUnavailableError(f"STS AssumeRoleWithWebIdentity failed ({code})") from None
        except BotoCoreError as error:
            raise AwsCredentialsUnavailableError(
                f"STS AssumeRoleWithWebIdentity could not be reached ({type(error).__name__})") from None
        _logger.info("assumed %s through web identity federation; the credentials expire at %s",
                     settings.role_arn, credentials["expiry_time"])
        return credentials

    options: dict[str, Any] = {}
    if time_fetcher is not None:
        options["time_fetcher"] = time_fetcher
    return DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role-with-web-identity", **options)


def key_vault_credentials(settings: AwsSettings, read_secret: Callable[[str], str], *,
                          time_fetcher: Callable[[], datetime] | None = None) -> RefreshableCredentials:
    """An access key pair from a Key Vault secret holding
    `{"accessKeyId": "...", "secretAccessKey": "..."}`, re-read every cache period."""
    if settings.access_key_secret_name is None:
        raise ValueError("Key Vault credentials need OPTOUT_AWS_ACCESS_KEY_SECRET_NAME")
    name = settings.access_key_secret_name
    now = time_fetcher or (lambda: datetime.now(tzlocal()))

    def read() -> dict[str, Any]:
        try:
            value = read_secret(name)
        except AzureError as error:
            raise AwsCredentialsUnavailableError(
                f"could not read secret '{name}' from Key Vault ({type(error).__name__})") from None
        try:
            data = json.loads(value)
            access_key, secret_key = data["accessKeyId"], data["secretAccessKey"]
        except (ValueError, TypeError, KeyError):
            raise AwsCredentialsUnavailableError(
                f"secret '{name}' is not JSON with accessKeyId and secretAccessKey") from None
        if not isinstance(access_key, str) or not isinstance(secret_key, str) or not access_key or not secret_key:
            raise AwsCredentialsUnavailableError(f"secret '{name}' has an empty accessKeyId or secretAccessKey")
        expiry = now() + timedelta(seconds=settings.secret_cache_seconds) + _KEY_VAULT_REFRESH_WINDOW
        # A long-lived key pair has no session token.
        return {"access_key": access_key, "secret_key": secret_key, "token": None,  # nosec B105 - not a password
                "expiry_time": expiry.isoformat()}

    options: dict[str, Any] = {}
    if time_fetcher is not None:
        options["time_fetcher"] = time_fetcher
    window = _KEY_VAULT_REFRESH_WINDOW.total_seconds()
    metadata = read()
    return RefreshableCredentials(
        metadata["access_key"], metadata["secret_key"], None,
        datetime.fromisoformat(metadata["expiry_time"]), read, "key-vault",
        advisory_timeout=window, mandatory_timeout=0, **options,
    )


def botocore_session(
    settings: AwsSettings,
    *,
    token_credential: TokenCredential | None = None,
    read_secret: Callable[[str], str] | None = None,
) -> botocore.session.Session:
    """A botocore session whose credentials follow `settings.credential_mode`."""
    session = botocore.session.Session()
    if settings.region:
        session.set_config_variable("region", settings.region)
    if settings.credential_mode is AwsCredentialMode.WEB_IDENTITY:
        if token_credential is None:
            raise ValueError("web identity federation needs the gateway's Azure credential")
        credentials: Credentials = web_identity_credentials(
            session, settings, EntraTokenLoader(token_credential, settings.web_identity_audience))
        session.register_component("credential_provider",
                                   CredentialResolver([_Fixed(credentials, "assume-role-with-web-identity")]))
    elif settings.credential_mode is AwsCredentialMode.KEY_VAULT:
        if read_secret is None:
            raise ValueError("Key Vault credentials need a secret reader")
        credentials = key_vault_credentials(settings, read_secret)
        session.register_component("credential_provider", CredentialResolver([_Fixed(credentials, "key-vault")]))
    return session


def _bounded(settings: AwsSettings, config: Config | None) -> Config:
    # STS is on the path of a waiting caller: fail in seconds, as the identity endpoint does.
    bounded = Config(connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
                     retries={"mode": "standard", "max_attempts": 3})
    return bounded.merge(config) if config is not None else bounded
