"""AWS provider settings, read from app settings (environment variables).

Stdlib only, like `optouts.config`: reading them never imports boto3. AWS's own
variables keep their standard meaning (AWS_REGION, AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2
or AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_STS, and the standard credential chain when no
role or Key Vault secret is configured); the gateway's own ones start with OPTOUT_AWS_.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

# One way to read a setting, collecting every problem (optouts.config).
from optouts.config import EnvironSettings, _number, _Reader, _text

PUT = "PutOptedOutNumber"
DELETE = "DeleteOptedOutNumber"
DESCRIBE = "DescribeOptedOutNumbers"
DESCRIBE_PHONE_NUMBERS = "DescribePhoneNumbers"

#: AWS's default per-account quotas in requests per second ("Quotas for AWS End User
#: Messaging SMS": DeleteOptedOutNumber 10, PutOptedOutNumber, DescribeOptedOutNumbers
#: and DescribePhoneNumbers 1). Raise the settings when AWS raised the account's quotas.
DEFAULT_RATES: dict[str, float] = {PUT: 1.0, DELETE: 10.0, DESCRIBE: 1.0, DESCRIBE_PHONE_NUMBERS: 1.0}
RATE_SETTINGS: dict[str, str] = {
    PUT: "OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER",
    DELETE: "OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER",
    DESCRIBE: "OPTOUT_AWS_RPS_DESCRIBE_OPTED_OUT_NUMBERS",
    DESCRIBE_PHONE_NUMBERS: "OPTOUT_AWS_RPS_DESCRIBE_PHONE_NUMBERS",
}
DEFAULT_WEB_IDENTITY_AUDIENCE = "api://AzureADTokenExchange"
DEFAULT_ROLE_SESSION_NAME = "sms-optout-gateway"
DEFAULT_SESSION_SECONDS = 3600
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_LIST_CACHE_SECONDS = 3600.0
DEFAULT_SECRET_CACHE_SECONDS = 300.0
DEFAULT_QUEUE_TIME_BUDGET_SECONDS = 240.0

#: OptOutListNameOrArn in the service model.
_LIST_NAME = re.compile(r"[A-Za-z0-9_:/-]{1,256}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PHONE_ID = re.compile(
    r"(phone-[A-Za-z0-9]+|arn:aws[a-z-]*:sms-voice:[a-z0-9-]+:[0-9]{12}:phone-number/[A-Za-z0-9_-]+)")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


class AwsCredentialMode(str, enum.Enum):
    #: The function's managed identity → Entra ID token → STS AssumeRoleWithWebIdentity (the default).
    WEB_IDENTITY = "web-identity"
    #: An access key pair in a Key Vault secret (the fallback where federation is not possible).
    KEY_VAULT = "key-vault"
    #: boto3's standard chain (AWS_ACCESS_KEY_ID..., profiles): local development against the emulator.
    DEFAULT_CHAIN = "default-chain"


@dataclass(frozen=True)
class AwsSettings(EnvironSettings):
    #: sender → opt-out list name or ARN; None: looked up from the number (DescribePhoneNumbers).
    senders: Mapping[str, str | None]
    region: str | None
    endpoint_url: str | None
    sts_endpoint_url: str | None
    #: Per-instance requests per second for each action (the quota divided by max_instances).
    rates: Mapping[str, float]
    #: The account quotas as configured, before sharing them between instances.
    quotas: Mapping[str, float]
    max_instances: int
    max_attempts: int
    max_concurrency: int
    credential_mode: AwsCredentialMode
    role_arn: str | None
    web_identity_audience: str
    role_session_name: str
    session_seconds: int
    key_vault_url: str | None
    access_key_secret_name: str | None
    secret_cache_seconds: float
    list_cache_seconds: float
    queue_time_budget_seconds: float
    connect_timeout: float = 5.0
    read_timeout: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.senders)

    def is_aws_sender(self, sender: str) -> bool:
        return sender in self.senders

    @classmethod
    def _read(cls, env: _Reader) -> AwsSettings:
        senders = _senders(env)
        region = _text(env, "AWS_REGION") or _text(env, "AWS_DEFAULT_REGION")
        if region is not None and not _REGION.fullmatch(region):
            env.problem("AWS_REGION", "must be an AWS region such as us-east-1")
        if senders and region is None:
            env.problem("AWS_REGION", "is required when OPTOUT_AWS_SENDERS is set")
        endpoint_url = _endpoint(env, "AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2") or _endpoint(env, "AWS_ENDPOINT_URL")
        sts_endpoint_url = _endpoint(env, "AWS_ENDPOINT_URL_STS") or _endpoint(env, "AWS_ENDPOINT_URL")

        max_instances = int(_number(env, "OPTOUT_AWS_MAX_INSTANCES", 1, minimum=1))
        quotas = {action: _number(env, name, DEFAULT_RATES[action], minimum=0.001)
                  for action, name in RATE_SETTINGS.items()}
        rates = {action: quota / max_instances for action, quota in quotas.items()}

        role_arn = _text(env, "OPTOUT_AWS_ROLE_ARN")
        secret_name = _text(env, "OPTOUT_AWS_ACCESS_KEY_SECRET_NAME")
        key_vault_url = _text(env, "OPTOUT_AWS_KEY_VAULT_URL") or _text(env, "KEY_VAULT_URL")
        mode = AwsCredentialMode.DEFAULT_CHAIN
        if role_arn is not None:
            if not _ROLE_ARN.fullmatch(role_arn):
                env.problem("OPTOUT_AWS_ROLE_ARN", "must be an IAM role ARN such as "
                                                   "arn:aws:iam::123456789012:role/NAME")
            mode = AwsCredentialMode.WEB_IDENTITY
        elif secret_name is not None:
            if key_vault_url is None:
                env.problem("KEY_VAULT_URL", "is required with OPTOUT_AWS_ACCESS_KEY_SECRET_NAME")
            mode = AwsCredentialMode.KEY_VAULT
        session_name = _text(env, "OPTOUT_AWS_ROLE_SESSION_NAME") or DEFAULT_ROLE_SESSION_NAME
        if not _SESSION_NAME.fullmatch(session_name):
            env.problem("OPTOUT_AWS_ROLE_SESSION_NAME", "must be 2-64 characters of letters, digits and =,.@-_")
            session_name = DEFAULT_ROLE_SESSION_NAME

        return cls(
            senders=senders,
            region=region,
            endpoint_url=endpoint_url,
            sts_endpoint_url=sts_endpoint_url,
            rates=rates,
            quotas=quotas,
            max_instances=max_instances,
            max_attempts=int(_number(env, "OPTOUT_AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, minimum=1)),
            max_concurrency=int(_number(env, "OPTOUT_AWS_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, minimum=1)),
            credential_mode=mode,
            role_arn=role_arn,
            web_identity_audience=_text(env, "OPTOUT_AWS_WEB_IDENTITY_AUDIENCE") or DEFAULT_WEB_IDENTITY_AUDIENCE,
            role_session_name=session_name,
            session_seconds=int(_number(env, "OPTOUT_AWS_SESSION_SECONDS", DEFAULT_SESSION_SECONDS, minimum=900)),
            key_vault_url=key_vault_url,
            access_key_secret_name=secret_name,
            secret_cache_seconds=_number(env, "OPTOUT_AWS_SECRET_CACHE_SECONDS", DEFAULT_SECRET_CACHE_SECONDS,
                                         minimum=0),
            list_cache_seconds=_number(env, "OPTOUT_AWS_LIST_CACHE_SECONDS", DEFAULT_LIST_CACHE_SECONDS, minimum=0),
            queue_time_budget_seconds=_number(env, "OPTOUT_AWS_QUEUE_TIME_BUDGET_SECONDS",
                                              DEFAULT_QUEUE_TIME_BUDGET_SECONDS, minimum=1),
        )

    def describe(self) -> dict[str, object]:
        """What /api/health may show: the configuration's shape, never a secret."""
        return {
            "senders": {sender: listname or "(looked up from the number)" for sender, listname in
                        sorted(self.senders.items())},
            "region": self.region,
            "endpointUrl": self.endpoint_url,
            "credentialMode": self.credential_mode.value,
            "roleArn": self.role_arn,
            "webIdentityAudience": self.web_identity_audience if self.role_arn else None,
            "accessKeySecretName": self.access_key_secret_name,
            "requestsPerSecond": dict(self.rates),
            "maxInstances": self.max_instances,
            "maxAttempts": self.max_attempts,
            "retryMode": "adaptive",
        }


def _senders(env: _Reader) -> dict[str, str | None]:
    senders: dict[str, str | None] = {}
    for part in env.get("OPTOUT_AWS_SENDERS", "").split(","):
        part = part.strip()
        if not part:
            continue
        sender, separator, list_name = (piece.strip() for piece in part.partition("="))
        sender = _comparable_sender(sender)
        if not sender:
            env.problem("OPTOUT_AWS_SENDERS", "each entry must be sender=optOutListName or a bare sender")
        elif separator and not _LIST_NAME.fullmatch(list_name):
            env.problem("OPTOUT_AWS_SENDERS", f"the opt-out list for {sender[:32]!r} must be a list "
                                              "name or ARN (letters, digits, _ : / -)")
        elif separator:
            senders[sender] = list_name
        elif not (_E164.fullmatch(sender) or _PHONE_ID.fullmatch(sender)):
            env.problem("OPTOUT_AWS_SENDERS", f"{sender[:32]!r} has no opt-out list: only an E.164 "
                                              "number or a phone number id can be looked up; write "
                                              "sender=optOutListName")
        else:
            senders[sender] = None
    return senders


def _comparable_sender(sender: str) -> str:
    """As requests' senders are compared (optouts/domain/commands.py): numbers as compact E.164."""
    compact = "".join(c for c in sender if c not in " -().")
    return compact if compact.startswith("+") and compact[1:].isdigit() else sender


def _endpoint(env: _Reader, name: str) -> str | None:
    url = _text(env, name)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        env.problem(name, "must be an https:// URL")
        return None
    # SigV4 never sends the secret, but temporary credentials' session token travels in a
    # header: plain http is for a loopback emulator only.
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        env.problem(name, "must be https:// (plain http is only for a loopback emulator)")
        return None
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
