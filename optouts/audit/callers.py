"""Who asked for an operation, and how far that can be believed.

App Service authentication (Easy Auth) authenticates callers in front of the app, strips any
`X-MS-CLIENT-PRINCIPAL*` header a caller sent, and sets its own. App Service announces that it
is on with the app setting WEBSITE_AUTH_ENABLED=True. Only then are those headers a verified
identity; without it, any function-key holder can write any name there, so what the headers
say is kept apart, as `claimed`, and the verified caller is `function-key`.

Light on purpose (no Azure SDK): the HTTP functions build a context before anything heavy runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: HTTP callers authenticated only by a function key: the host does not say which key.
FUNCTION_KEY_CALLER = "function-key"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
#: Principal names come from a header: kept, but not without limit.
MAX_CALLER_LENGTH = 256


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who asked and through which door; the same for every number of one operation."""

    channel: str  # http | queue
    caller: str
    correlation_id: str
    caller_id: str | None = None
    #: True only for an identity the platform vouched for (App Service authentication).
    verified: bool = False
    #: What the request said about its caller without proof: recorded, never trusted.
    claimed_caller: str | None = None
    claimed_caller_id: str | None = None
    trace_id: str | None = None
    #: The end user made the change themselves (an SMS keyword), not a caller of the gateway.
    end_user: bool = False


def http_context(headers: Mapping[str, str], trace_id: str, *, verified_headers: bool) -> AuditContext:
    """The caller of an HTTP request; `verified_headers` is the WEBSITE_AUTH_ENABLED setting."""
    name = header_text(headers.get(PRINCIPAL_NAME_HEADER))
    principal_id = header_text(headers.get(PRINCIPAL_ID_HEADER))
    if verified_headers and (name or principal_id):
        return AuditContext("http", name or principal_id or FUNCTION_KEY_CALLER, trace_id, principal_id,
                            verified=True, trace_id=trace_id)
    return AuditContext("http", FUNCTION_KEY_CALLER, trace_id, None, verified=False,
                        claimed_caller=name, claimed_caller_id=principal_id, trace_id=trace_id)


def queue_context(queue_name: str, correlation_id: str) -> AuditContext:
    """A queued request's caller is the queue: whoever may write to it. A correlation id is
    the message's own text, so it is a claim too, but one the caller chose to be tracked by."""
    return AuditContext("queue", queue_name, correlation_id)


#: The caller of a change the end user made by texting a keyword: the end user.
END_USER_CALLER = "end-user"


def keyword_context(message_id: str) -> AuditContext:
    """A change the end user made by texting a keyword to the sender; ACS made it before the
    gateway heard of it. Tracked by the SMS's message id."""
    return AuditContext("keyword", END_USER_CALLER, message_id, end_user=True)


def header_text(value: str | None) -> str | None:
    """Header text as it may be stored: bounded, without control characters."""
    text = "".join(c for c in (value or "") if c.isprintable()).strip()[:MAX_CALLER_LENGTH]
    return text or None
