"""Problem details (RFC 9457) in the shape ACS itself answers with.

A `Problem` is raised anywhere a request cannot be served and turned into an
`application/problem+json` answer (HTTP) or a `rejected`/`failed` result (queue).
"""

from __future__ import annotations

import secrets
from typing import Any

_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    403: "https://tools.ietf.org/html/rfc9110#section-15.5.4",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    415: "https://tools.ietf.org/html/rfc9110#section-15.5.16",
    502: "https://tools.ietf.org/html/rfc9110#section-15.6.3",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}

#: How many field errors one answer lists; a 10,000-entry list helps nobody.
MAX_FIELD_ERRORS = 20


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = dict(list((errors or {}).items())[:MAX_FIELD_ERRORS])
        self.retry_after = retry_after

    @property
    def is_transient(self) -> bool:
        return self.status == 503

    def to_dict(self, trace_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": _TYPES.get(self.status, "about:blank"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = self.errors
        body["traceId"] = trace_id
        return body


def validation_problem(errors: dict[str, list[str]], *, status: int = 400, code: str = "ValidationFailed") -> Problem:
    detail = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in list(errors.items())[:3])
    return Problem(status, code, "One or more validation errors occurred.", detail, errors=errors)


def new_trace_id(traceparent: str | None = None) -> str:
    """A W3C trace id like ACS's: reuse the caller's trace when it sent a valid traceparent."""
    if traceparent:
        parts = traceparent.strip().split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16 and _is_hex(parts[1] + parts[2]):
            return f"00-{parts[1]}-{secrets.token_hex(8)}-00"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text.lower())
