"""A stand-in for STS `AssumeRoleWithWebIdentity` (query protocol, XML answers).

Real STS checks the web identity token against the account's IAM OIDC provider: the
token must be a signed JWT from a trusted issuer, for an audience (client id) the
provider lists, not expired, and the role's trust policy must admit its subject. The
stand-in does the same with a local issuer: it mints HS256 JWTs shaped like Entra ID
tokens (`mint_token`), which a test hands to the managed-identity stand-in, and checks
issuer, audience, expiry, signature and subject. It then issues temporary credentials
(ASIA… key, secret, session token, expiration) that the emulated SMS API accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from .sigv4 import SigningKey

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ACCOUNT_ID = "123456789012"
MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 43200


@dataclass(frozen=True)
class TrustedRole:
    role_arn: str
    #: The client ids (audiences) the IAM OIDC provider lists.
    audiences: frozenset[str]
    #: Subjects (`sub` claims) the trust policy admits; None admits any subject of the issuer.
    subjects: frozenset[str] | None = None


@dataclass
class AssumeRoleCall:
    role_arn: str | None
    session_name: str | None
    audience: str | None
    subject: str | None
    outcome: str


@dataclass
class StsStandIn:
    """Owned by the emulator; `issuer` plays the IAM OIDC provider's URL."""

    issuer: str = "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"
    #: Cap on the lifetime of issued credentials, so tests can watch a refresh (None: as asked).
    credential_lifetime_seconds: float | None = None
    roles: dict[str, TrustedRole] = field(default_factory=dict)
    calls: list[AssumeRoleCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._signing_secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._issued: dict[str, SigningKey] = {}

    # -- set-up ------------------------------------------------------------------------------

    def trust(self, role_arn: str, *, audience: str, subjects: set[str] | None = None) -> None:
        self.roles[role_arn] = TrustedRole(role_arn, frozenset({audience}),
                                           None if subjects is None else frozenset(subjects))

    def mint_token(self, *, subject: str, audience: str, issuer: str | None = None,
                   lifetime_seconds: float = 3600, sign: bool = True) -> str:
        """A JWT like the one Entra ID issues to a managed identity for `audience`."""
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT", "kid": "aws-emulator"}
        claims = {"aud": audience, "iss": issuer or self.issuer, "sub": subject, "oid": subject,
                  "iat": now, "nbf": now - 60, "exp": int(now + lifetime_seconds)}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        mac = hmac.new(self._signing_secret if sign else secrets.token_bytes(32), signing_input.encode(),
                       hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def key_for(self, access_key_id: str) -> SigningKey | None:
        with self._lock:
            return self._issued.get(access_key_id)

    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    # -- the call ------------------------------------------------------------------------------

    def handle(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        form = {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
        action = form.get("Action")
        if action != "AssumeRoleWithWebIdentity":
            return _error(400, "InvalidAction", f"Could not find operation {str(action)[:64]} for version "
                                                f"{str(form.get('Version'))[:20]}")
        role_arn, session_name, token = form.get("RoleArn"), form.get("RoleSessionName"), form.get("WebIdentityToken")
        call = AssumeRoleCall(role_arn, session_name, None, None, "refused")
        with self._lock:
            self.calls.append(call)
        for name, value in (("RoleArn", role_arn), ("RoleSessionName", session_name), ("WebIdentityToken", token)):
            if not value:
                return _error(400, "ValidationError",
                              f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' "
                              "failed to satisfy constraint: Member must not be null")
        assert role_arn is not None and session_name is not None and token is not None
        if not all(c in string.ascii_letters + string.digits + "=,.@-_" for c in session_name) \
                or not 2 <= len(session_name) <= 64:
            return _error(400, "ValidationError", "1 validation error detected: Value at 'roleSessionName' failed "
                                                  "to satisfy constraint: Member must satisfy regular expression "
                                                  "pattern: [\\w+=,.@-]*")
        try:
            duration = int(form.get("DurationSeconds") or 3600)
        except ValueError:
            return _error(400, "ValidationError", "DurationSeconds must be a number")
        if not MIN_DURATION_SECONDS <= duration <= MAX_DURATION_SECONDS:
            return _error(400, "ValidationError", "1 validation error detected: Value at 'durationSeconds' failed "
                                                  "to satisfy constraint: Member must have value between 900 "
                                                  "and 43200")
        claims, problem = self._verify_token(token)
        if problem is not None:
            return problem
        assert claims is not None
        call.audience, call.subject = str(claims.get("aud")), str(claims.get("sub"))
        role = self.roles.get(role_arn)
        if role is not None and call.audience not in role.audiences:
            return _error(400, "InvalidIdentityToken", "Incorrect token audience")
        if role is None or (role.subjects is not None and call.subject not in role.subjects):
            return _error(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")

        lifetime = float(duration)
        if self.credential_lifetime_seconds is not None:
            lifetime = min(lifetime, self.credential_lifetime_seconds)
        expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
        access_key_id = "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        key = SigningKey(secrets.token_urlsafe(30)[:40], secrets.token_urlsafe(96), expires_at)
        with self._lock:
            self._issued[access_key_id] = key
        call.outcome = "issued"
        role_name = role_arn.rsplit("/", 1)[-1]
        request_id = secrets.token_hex(16)
        xml = (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NAMESPACE}">'
            "<AssumeRoleWithWebIdentityResult>"
            f"<SubjectFromWebIdentityToken>{escape(call.subject)}</SubjectFromWebIdentityToken>"
            f"<Audience>{escape(call.audience)}</Audience>"
            "<AssumedRoleUser>"
            f"<Arn>arn:aws:sts::{ACCOUNT_ID}:assumed-role/{escape(role_name)}/{escape(session_name)}</Arn>"
            f"<AssumedRoleId>AROA{secrets.token_hex(8).upper()}:{escape(session_name)}</AssumedRoleId>"
            "</AssumedRoleUser>"
            "<Credentials>"
            f"<SessionToken>{key.session_token}</SessionToken>"
            f"<SecretAccessKey>{key.secret_access_key}</SecretAccessKey>"
            f"<Expiration>{expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
            f"<AccessKeyId>{access_key_id}</AccessKeyId>"
            "</Credentials>"
            f"<Provider>{escape(str(claims.get('iss')))}</Provider>"
            "</AssumeRoleWithWebIdentityResult>"
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )
        return 200, {"x-amzn-RequestId": request_id}, xml.encode("utf-8")

    def _verify_token(self, token: str) -> tuple[dict[str, object] | None, tuple[int, dict[str, str], bytes] | None]:
        parts = token.split(".")
        if len(parts) != 3:
            return None, _error(400, "InvalidIdentityToken", "The web identity token is not a valid JWT")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            mac = _unb64(parts[2])
        except (ValueError, binascii.Error):
            return None, _error(400, "InvalidIdentityToken", "The web identity token is not a valid JWT")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None, _error(400, "InvalidIdentityToken", "The web identity token is not a valid JWT")
        if claims.get("iss") != self.issuer:
            return None, _error(400, "InvalidIdentityToken",
                                f"No OpenIDConnect provider found in your account for {str(claims.get('iss'))[:200]}")
        expected = hmac.new(self._signing_secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(expected, mac):
            return None, _error(400, "InvalidIdentityToken", "Couldn't verify the signature of the web identity token")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= time.time():
            return None, _error(400, "ExpiredTokenException", "Token is expired")
        return claims, None


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    request_id = secrets.token_hex(16)
    kind = "Sender" if status < 500 else "Receiver"
    xml = (f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>{kind}</Type><Code>{code}</Code>'
           f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return status, {"x-amzn-RequestId": request_id}, xml.encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
