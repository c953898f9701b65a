"""AWS Signature Version 4, verified from the documented algorithm (not from botocore).

The emulator recomputes the signature of every request from what it actually
received: the method, the path and query as sent, the signed headers' values and the
SHA-256 of the body bytes. A wrong secret, a stale or future date, a scope for another
region or service, or a body changed after signing all fail here with AWS's own error
codes and messages (JSON protocol: `__type` + `message`, HTTP 400).

Reference: "Create a signed AWS API request" (canonical request → string to sign →
signing key kDate/kRegion/kService/kSigning → hex HMAC).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
#: How far a request's X-Amz-Date may be from the server's clock.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_PARAMETER = re.compile(r"\s*([A-Za-z]+)=([^,]*)")
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


class SignatureRejected(Exception):
    """The request is refused; `code` and `message` are what AWS answers."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SigningKey:
    """What the server knows about an access key id."""

    secret_access_key: str
    #: For temporary credentials (from STS): the session token that must come with them.
    session_token: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class VerifiedRequest:
    access_key_id: str
    region: str
    service: str


def verify(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    region: str,
    service: str,
    lookup_key: Callable[[str], SigningKey | None],
    now: datetime | None = None,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> VerifiedRequest:
    """Check the Authorization header of one request; raise `SignatureRejected` if it fails."""
    now = now or datetime.now(UTC)
    authorization = _header(headers, "authorization")
    if authorization is None:
        raise SignatureRejected("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRejected("IncompleteSignatureException",
                                f"Unsupported AWS 'algorithm': '{algorithm[:40]}'")
    parameters = {name: value.strip() for name, value in _PARAMETER.findall(rest)}
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not parameters.get(required):
            raise SignatureRejected(
                "IncompleteSignatureException",
                f"Authorization header requires '{required}' parameter. Authorization=AWS4-HMAC-SHA256 ...",
            )
    scope_parts = parameters["Credential"].split("/")
    if len(scope_parts) != 5 or scope_parts[4] != "aws4_request":
        raise SignatureRejected("IncompleteSignatureException",
                                "Credential must have exactly 5 slash-delimited elements, e.g. "
                                "keyid/date/region/service/term")
    access_key_id, scope_date, scope_region, scope_service, _ = scope_parts

    amz_date = _header(headers, "x-amz-date")
    if amz_date is None:
        raise SignatureRejected("IncompleteSignatureException",
                                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureRejected("IncompleteSignatureException",
                                "Date must be in ISO-8601 'basic format'.") from None
    if now - signed_at > clock_skew:
        raise SignatureRejected(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {(now - clock_skew).strftime(_AMZ_DATE)} "
            f"({now.strftime(_AMZ_DATE)} - {int(clock_skew.total_seconds() // 60)} min.)",
        )
    if signed_at - now > clock_skew:
        raise SignatureRejected(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {(now + clock_skew).strftime(_AMZ_DATE)} "
            f"({now.strftime(_AMZ_DATE)} + {int(clock_skew.total_seconds() // 60)} min.)",
        )
    if scope_date != amz_date[:8]:
        raise SignatureRejected("InvalidSignatureException",
                                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                                f"from HTTP: '{scope_date[:8]}' != '{amz_date[:8]}', from '{amz_date}'.")
    if scope_region != region:
        raise SignatureRejected("InvalidSignatureException", "Credential should be scoped to a valid region.")
    if scope_service != service:
        raise SignatureRejected("InvalidSignatureException",
                                f"Credential should be scoped to correct service: '{service}'.")

    key = lookup_key(access_key_id)
    if key is None:
        raise SignatureRejected("UnrecognizedClientException", "The security token included in the request is invalid.")
    if key.session_token is not None:
        if _header(headers, "x-amz-security-token") != key.session_token:
            raise SignatureRejected("UnrecognizedClientException",
                                    "The security token included in the request is invalid.")
        if key.expires_at is not None and now >= key.expires_at:
            raise SignatureRejected("ExpiredTokenException", "The security token included in the request is expired")

    signed_headers = parameters["SignedHeaders"].split(";")
    if "host" not in signed_headers:
        raise SignatureRejected("InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    canonical = canonical_request(method, target, headers, signed_headers, body)
    expected = signature(key.secret_access_key, amz_date, f"{scope_date}/{scope_region}/{scope_service}/aws4_request",
                         canonical)
    if not hmac.compare_digest(expected, parameters["Signature"]):
        raise SignatureRejected("InvalidSignatureException", _SIGNATURE_MISMATCH)
    return VerifiedRequest(access_key_id, scope_region, scope_service)


def canonical_request(method: str, target: str, headers: Mapping[str, str], signed_headers: list[str],
                      body: bytes) -> str:
    path, _, query = target.partition("?")
    lines = [method.upper(), _canonical_uri(path), _canonical_query(query)]
    for name in signed_headers:
        value = _header(headers, name)
        lines.append(f"{name}:{' '.join((value or '').split())}")
    lines.append("")
    lines.append(";".join(signed_headers))
    # The hash of the body as received: a body changed after signing no longer matches.
    lines.append(hashlib.sha256(body).hexdigest())
    return "\n".join(lines)


def signature(secret_access_key: str, amz_date: str, scope: str, canonical: str) -> str:
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    date, region, service, terminator = scope.split("/")
    key = ("AWS4" + secret_access_key).encode("utf-8")
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _canonical_uri(path: str) -> str:
    # Services other than S3 normalize the path and URI-encode each segment of what was sent.
    segments: list[str] = []
    for segment in (path or "/").split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    return quote(normalized, safe="/~")


def _canonical_query(query: str) -> str:
    pairs: list[tuple[str, str]] = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    get_all = getattr(headers, "get_all", None)
    if get_all is not None:
        values = get_all(name)
        return ",".join(v.strip() for v in values) if values else None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
