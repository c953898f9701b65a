"""The API contract: one Swagger 2.0 document, built here and nowhere else.

Swagger 2.0 rather than OpenAPI 3 because Power Platform custom connectors only import 2.0.
`connector/apiDefinition.swagger.json` is this document with a placeholder host, written by
`python -m optouts.contract.openapi`; `GET /api/openapi.json` serves it with the caller's host.

The schemas state exactly what the code accepts and answers (tests/test_schemathesis.py
holds the running app to them), and carry the Power Automate extensions: `x-ms-summary`
labels every field in the flow designer, `x-ms-visibility` puts the phone numbers first
and tucks region and reason under "Show advanced options".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

from optouts.config import DEFAULT_MAX_NUMBERS
from optouts.domain.commands import MAX_REASON_LENGTH, MAX_SENDER_LENGTH
from optouts.domain.limits import MAX_INPUT_LENGTH, MAX_PAGE_SIZE, OPERATION_ID_REGEX

#: Replaced by the real app host when the connector is imported (docs/power-automate.md).
PLACEHOLDER_HOST = "your-function-app.azurewebsites.net"
BASE_PATH = "/api"
FUNCTION_KEY_HEADER = "x-functions-key"
# Blank means "not given" (flows send empty fields), so the default region applies.
REGION_PATTERN = "^([A-Za-z]{2})?$"

#: How callers authenticate to the app: its function key, or Entra ID (App Service
#: authentication) in front of it, in which case the connector adds the key by policy.
Auth = Literal["function-key", "entra-id"]

_JSON = "application/json"
_PROBLEM_JSON = "application/problem+json"
_RESPONSE_TYPES = [_JSON, _PROBLEM_JSON]


def build_document(
    host: str = PLACEHOLDER_HOST,
    *,
    schemes: Sequence[str] = ("https",),
    base_path: str = BASE_PATH,
    auth: Auth = "function-key",
) -> dict[str, Any]:
    """The Swagger 2.0 document for an app reachable at `schemes://host/base_path`."""
    return {
        "swagger": "2.0",
        "info": {
            "title": "SMS Opt-Out Gateway",
            "description": (
                "Manage the Azure Communication Services SMS opt-out list of your organization's senders: "
                "remove numbers so they can receive SMS again, add numbers, or check who opted out."
            ),
            "version": "1.0",
        },
        "host": host,
        "basePath": base_path,
        "schemes": list(schemes),
        "consumes": [_JSON],
        "produces": list(_RESPONSE_TYPES),
        "paths": _paths(),
        "definitions": _definitions(),
        "securityDefinitions": _security_definitions(auth),
        "security": [{name: []} for name in _security_definitions(auth)],
        "tags": [{"name": "Opt-outs", "description": "The SMS opt-out list of a sender."},
                 {"name": "Operations", "description": "The gateway's own state, for operators."}],
    }


# -- operations ------------------------------------------------------------------------------


def _paths() -> dict[str, Any]:
    return {
        "/optouts/remove": {"post": _bulk_operation(
            "RemoveOptOutNumbers",
            "Remove Numbers From SMS Opt-Out List",
            "Lets the given phone numbers receive SMS from the sender again, reporting the outcome for each number.",
        )},
        "/optouts/add": {"post": _bulk_operation(
            "AddOptOutNumbers",
            "Add Numbers To SMS Opt-Out List",
            "Stops SMS from the sender to the given phone numbers, reporting the outcome for each number.",
        )},
        "/optouts/check": {"post": _bulk_operation(
            "CheckOptOutNumbers",
            "Check Numbers On SMS Opt-Out List",
            "Tells for each given phone number whether it has opted out of SMS from the sender.",
        )},
        "/optouts": {"get": _listing_operation()},
        "/optouts/{phoneNumber}": {"get": _single_status_operation()},
        "/optouts/{phoneNumber}/history": {"get": _history_operation()},
        "/operations/{operationId}": {"get": _audit_operation_operation()},
        "/health/ready": {"get": _readiness_operation()},
    }


def _bulk_operation(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": ["Opt-outs"],
        "consumes": [_JSON],
        "produces": list(_RESPONSE_TYPES),
        "parameters": [{
            "name": "body",
            "in": "body",
            "required": True,
            "x-ms-summary": "Request",
            "description": "The phone numbers and, optionally, the sender, region and reason.",
            "schema": {"$ref": "#/definitions/OptOutRequest"},
        }],
        "responses": {
            "200": {
                "description": "Every number's outcome, in the order given, with a summary.",
                "schema": {"$ref": "#/definitions/OptOutReport"},
                "headers": _trace_header(),
            },
            **_error_responses(400, 401, 403, 413, 415, 502, 503),
        },
    }


def _single_status_operation() -> dict[str, Any]:
    return {
        "operationId": "GetOptOutStatus",
        "summary": "Get Opt-Out Status Of A Phone Number",
        "description": "Answers whether one phone number has opted out of SMS from the sender, for use in a condition.",
        "tags": ["Opt-outs"],
        "produces": list(_RESPONSE_TYPES),
        "parameters": [
            {
                "name": "phoneNumber",
                "in": "path",
                "required": True,
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_INPUT_LENGTH,
                "x-ms-summary": "Phone number",
                "x-ms-visibility": "important",
                "description": "The phone number, in E.164 (+14255550100) or the region's national format.",
                "x-example": "+14255550100",
            },
            {
                "name": "sender",
                "in": "query",
                "required": False,
                "type": "string",
                "x-example": "+18005550100",
                "x-ms-summary": "Sender",
                "description": "The sender's number or short code; the gateway's default sender when left empty.",
            },
            {
                "name": "region",
                "in": "query",
                "required": False,
                "type": "string",
                "pattern": REGION_PATTERN,
                "x-example": "US",
                "x-ms-summary": "Region",
                "x-ms-visibility": "advanced",
                "description": "Two-letter ISO 3166 region (such as US or GB) for a number written without +; "
                               "an unknown region is refused.",
            },
        ],
        "responses": {
            "200": {
                "description": "Whether the number is on the sender's opt-out list.",
                "schema": {"$ref": "#/definitions/OptOutStatus"},
                "headers": _trace_header(),
            },
            # No 413 or 415: a GET carries no body.
            **_error_responses(400, 401, 403, 502, 503),
        },
    }


def _history_operation() -> dict[str, Any]:
    return {
        "operationId": "GetOptOutHistory",
        "summary": "Get Opt-Out History Of A Phone Number",
        "description": "Lists who added, removed or checked one phone number on the sender's opt-out list, "
                       "newest first, a page at a time.",
        "tags": ["Opt-outs"],
        "produces": list(_RESPONSE_TYPES),
        # Power Automate follows nextLink itself and hands the flow every page's records.
        "x-ms-pageable": {"nextLinkName": "nextLink"},
        "parameters": [
            {
                "name": "phoneNumber",
                "in": "path",
                "required": True,
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_INPUT_LENGTH,
                "x-ms-summary": "Phone number",
                "x-ms-visibility": "important",
                "description": "The phone number, in E.164 (+14255550100) or the default region's national format.",
                "x-example": "+14255550100",
            },
            {
                "name": "sender",
                "in": "query",
                "required": False,
                "type": "string",
                "x-example": "+18005550100",
                "x-ms-summary": "Sender",
                "description": "The sender's number or short code; the gateway's default sender when left empty.",
            },
            {
                "name": "top",
                "in": "query",
                "required": False,
                "type": "integer",
                "format": "int32",
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "x-example": 20,
                "x-ms-summary": "Page size",
                "x-ms-visibility": "advanced",
                "description": f"How many records one page holds, 1 to {MAX_PAGE_SIZE}; 50 when left empty.",
            },
            {
                "name": "continuationToken",
                "in": "query",
                "required": False,
                "type": "string",
                "pattern": "^([0-9]{19}_[0-9a-f]{32})?$",
                "x-ms-summary": "Continuation token",
                "x-ms-visibility": "internal",
                "description": "Where the next page starts, as given in the previous page's nextLink; "
                               "empty for the first page.",
            },
        ],
        "responses": {
            "200": {
                "description": "One page of the number's audit records, newest first.",
                "schema": {"$ref": "#/definitions/OptOutHistory"},
                "headers": _trace_header(),
            },
            **_error_responses(400, 401, 403, 502, 503),
        },
    }


def _audit_operation_operation() -> dict[str, Any]:
    return {
        "operationId": "GetAuditOperation",
        "summary": "Get Audit Record Of An Operation",
        "description": "Shows who asked for an add, remove or audited check, when, for how many numbers, what ACS "
                       "answered (counts per outcome) and whether every number's history has it yet.",
        "tags": ["Opt-outs"],
        "produces": list(_RESPONSE_TYPES),
        "parameters": [{
            "name": "operationId",
            "in": "path",
            "required": True,
            "type": "string",
            "pattern": f"^{OPERATION_ID_REGEX}$",
            "x-ms-summary": "Operation id",
            "x-ms-visibility": "important",
            "description": "The operationId of an answer's audit object.",
            "x-example": "0f8e4c2a9b7d4e1f8a6c3b5d7e9f1a2b",
        }],
        "responses": {
            "200": {
                "description": "The operation's audit record.",
                "schema": {"$ref": "#/definitions/AuditOperation"},
                "headers": _trace_header(),
            },
            **_error_responses(400, 401, 404, 503),
        },
    }


def _readiness_operation() -> dict[str, Any]:
    return {
        "operationId": "GetGatewayReadiness",
        "summary": "Check Gateway Readiness",
        "description": "Tells whether the gateway can serve requests now: its settings, its credentials, an answer "
                       "from Azure Communication Services and its storage account, each checked at most every "
                       "30 seconds.",
        "tags": ["Operations"],
        "x-ms-visibility": "advanced",
        "produces": list(_RESPONSE_TYPES),
        "parameters": [],
        "responses": {
            "200": {
                "description": "Every dependency checked out.",
                "schema": {"$ref": "#/definitions/Readiness"},
                "headers": _trace_header(),
            },
            **_error_responses(400, 401),
            "503": {
                "description": "A dependency failed: the problem's checks say which, and why.",
                "schema": {"$ref": "#/definitions/Problem"},
                "headers": {**_trace_header(), "Retry-After": {
                    "type": "integer", "description": "Seconds to wait before checking again."}},
            },
        },
    }


LISTING_PAGE_SIZE = 100


def _listing_operation() -> dict[str, Any]:
    return {
        "operationId": "ListOptOutNumbers",
        "summary": "List Numbers On An SMS Opt-Out List",
        "description": "Lists every phone number on an AWS sender's opt-out list, a page at a time "
                       "(ACS has no listing API: 501 for its senders).",
        "tags": ["Opt-outs"],
        "produces": list(_RESPONSE_TYPES),
        "x-ms-pageable": {"nextLinkName": "nextLink"},
        "parameters": [
            {
                "name": "sender",
                "in": "query",
                "required": False,
                "type": "string",
                "x-example": "+18005550111",
                "x-ms-summary": "Sender",
                "x-ms-visibility": "important",
                "description": "The sender's number or short code; the gateway's default sender when left empty.",
            },
            {
                "name": "top",
                "in": "query",
                "required": False,
                "type": "integer",
                "format": "int32",
                "minimum": 1,
                "maximum": LISTING_PAGE_SIZE,
                "x-example": 100,
                "x-ms-summary": "Page size",
                "x-ms-visibility": "advanced",
                "description": f"How many numbers one page holds, 1 to {LISTING_PAGE_SIZE}; "
                               f"{LISTING_PAGE_SIZE} when left empty.",
            },
            {
                "name": "continuationToken",
                "in": "query",
                "required": False,
                "type": "string",
                "maxLength": 1024,
                # Empty: the first page (as an unset field in Power Automate).
                "x-example": "",
                "x-ms-summary": "Continuation token",
                "x-ms-visibility": "internal",
                "description": "Where the next page starts, as given in the previous page's nextLink; "
                               "empty for the first page.",
            },
        ],
        "responses": {
            "200": {
                "description": "One page of the numbers on the sender's opt-out list.",
                "schema": {"$ref": "#/definitions/OptOutList"},
                "headers": _trace_header(),
            },
            **_error_responses(400, 401, 403, 501, 502, 503),
        },
    }


def _provider_details_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "x-ms-summary": "Provider details",
        "description": "What the sender's provider reports about the number (AWS senders, and end-user keywords).",
        "properties": {
            "optOutList": {"type": "string", "x-ms-summary": "Opt-out list",
                           "description": "The AWS opt-out list of the sender."},
            "optedOutTimestamp": {"type": "string", "format": "date-time", "x-ms-summary": "Opted out at",
                                  "description": "When the number was put on the list."},
            "endUserOptedOut": {"type": "boolean", "x-ms-summary": "Opted out by the person",
                                "description": "True when the person texted STOP, false when added through an API."},
            "removedTimestamp": {"type": "string", "format": "date-time", "x-ms-summary": "Removed at",
                                 "description": "Remove only: when AWS took the number off the list."},
            "wasOptedOut": {"type": "boolean", "x-ms-summary": "Was opted out",
                            "description": "Remove only: false when the number was not on the list."},
            "keyword": {"type": "string", "x-ms-summary": "Keyword",
                        "description": "Channel keyword only: the keyword the person texted (STOP, START...)."},
            "messageId": {"type": "string", "x-ms-summary": "Message id",
                          "description": "Channel keyword only: ACS's id of the person's SMS."},
            "receivedTimestamp": {"type": "string", "format": "date-time", "x-ms-summary": "Received at",
                                  "description": "Channel keyword only: when ACS received the SMS."},
        },
    }


def _listed_number_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["phoneNumber"],
        "additionalProperties": False,
        "x-ms-summary": "Opted-out number",
        "properties": {
            "phoneNumber": {"type": "string", "x-ms-summary": "Phone number (E.164)",
                            "description": "A number on the opt-out list, in E.164."},
            "details": {"$ref": "#/definitions/ProviderDetails"},
        },
    }


def _listing_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["sender", "value"],
        "additionalProperties": False,
        "properties": {
            "sender": {"type": "string", "x-ms-summary": "Sender", "description": "The sender whose list it is."},
            "value": {"type": "array", "items": {"$ref": "#/definitions/ListedNumber"},
                      "x-ms-summary": "Numbers", "description": "The numbers on this page."},
            "nextLink": {"type": "string", "x-ms-summary": "Next page",
                         "description": "The URL of the next page; absent on the last page."},
        },
    }


_ERROR_DESCRIPTIONS = {
    400: "The request is malformed: not JSON, wrong types, missing or unknown fields, or an invalid number.",
    401: "The function key is missing or wrong (answered by the Functions host, with no body).",
    403: "The gateway may not manage the opt-out list of that sender.",
    404: "No operation with that id was accepted.",
    413: "Too many phone numbers in one request, or the body is too large; for an AWS sender, more numbers than "
         "AWS's request quota lets through in time (send them through the queue).",
    415: "The body is not sent as JSON.",
    501: "The sender's provider cannot list its opt-out list (Azure Communication Services): check numbers instead.",
    502: "Azure Communication Services or AWS End User Messaging SMS rejected the gateway's credentials or call; "
         "an operator must act.",
    503: "Azure Communication Services is throttling or unavailable, the audit trail cannot record the change "
         "(AuditUnavailable: nothing was changed), or the gateway is misconfigured; retry after Retry-After seconds.",
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {"description": _ERROR_DESCRIPTIONS[status]}
        if status != 401:  # the host's own answer has no body, and none of our headers
            response["schema"] = {"$ref": "#/definitions/Problem"}
            response["headers"] = _trace_header()
        if status == 503:
            response["headers"]["Retry-After"] = {
                "type": "integer",
                "description": "Seconds to wait before trying again.",
            }
        responses[str(status)] = response
    return responses


def _trace_header() -> dict[str, Any]:
    return {"x-trace-id": {"type": "string", "description": "W3C trace id that identifies the request in the logs."}}


# -- schemas -----------------------------------------------------------------------------------


def _definitions() -> dict[str, Any]:
    return {
        "OptOutRequest": _request_schema(),
        "OptOutReport": _report_schema(),
        "NumberResult": _number_result_schema(),
        "ProviderDetails": _provider_details_schema(),
        "OptOutList": _listing_schema(),
        "ListedNumber": _listed_number_schema(),
        "NumberError": _number_error_schema(),
        "OptOutSummary": _summary_schema(),
        "OptOutStatus": _status_schema(),
        "AuditReceipt": _audit_receipt_schema(),
        "OptOutHistory": _history_schema(),
        "AuditRecord": _audit_record_schema(),
        "AuditOperation": _audit_operation_schema(),
        "Problem": _problem_schema(),
        "Readiness": _readiness_schema(),
        "ReadinessChecks": _readiness_checks_schema(),
        "DependencyCheck": _dependency_check_schema(),
    }


def _request_schema() -> dict[str, Any]:
    # Null is accepted for the optional fields and means "not given" (the code reads it so),
    # hence x-nullable: a schema without it would call such requests invalid.
    return {
        "type": "object",
        "required": ["phoneNumbers"],
        "example": {"phoneNumbers": ["+14255550100", "(425) 555-0101"], "reason": "Customer asked by phone"},
        # The gateway refuses unknown fields: a mistyped "sender" must not fall back to the default.
        "additionalProperties": False,
        "properties": {
            "phoneNumbers": {
                "type": "array",
                "minItems": 1,
                "maxItems": DEFAULT_MAX_NUMBERS,
                "items": {
                    "type": "string",
                    "x-ms-summary": "Phone number",
                    "description": "E.164 (+14255550100) or the region's national format.",
                },
                "x-ms-summary": "Phone numbers",
                "x-ms-visibility": "important",
                "description": f"1 to {DEFAULT_MAX_NUMBERS} phone numbers (fewer if the gateway is configured so).",
            },
            "sender": {
                "type": "string",
                "maxLength": MAX_SENDER_LENGTH,
                "x-nullable": True,
                "x-ms-summary": "Sender",
                "description": "The sender's number or short code; the gateway's default sender when left empty.",
            },
            "region": {
                "type": "string",
                "pattern": REGION_PATTERN,
                "x-nullable": True,
                "x-ms-summary": "Region",
                "x-ms-visibility": "advanced",
                "description": "Two-letter region (such as US or GB) for numbers written without +.",
            },
            "reason": {
                "type": "string",
                "maxLength": MAX_REASON_LENGTH,
                "x-nullable": True,
                "x-ms-summary": "Reason",
                "x-ms-visibility": "advanced",
                "description": "Free text kept in the audit trail, such as a ticket number: at most "
                               f"{MAX_REASON_LENGTH} printable characters, no line breaks, tabs or other control "
                               "characters (refused with 400 otherwise).",
            },
        },
    }


def _report_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["action", "sender", "results", "summary"],
        "additionalProperties": False,
        "properties": {
            "action": {
                "type": "string",
                "enum": ["add", "remove", "check"],
                "x-ms-summary": "Action",
                "description": "What was done: add, remove or check.",
            },
            "sender": {"type": "string", "x-ms-summary": "Sender", "description": "The sender acted for."},
            "results": {
                "type": "array",
                "items": {"$ref": "#/definitions/NumberResult"},
                "x-ms-summary": "Results",
                "description": "One result per number given, in the same order.",
            },
            "summary": {"$ref": "#/definitions/OptOutSummary"},
            "audit": {"$ref": "#/definitions/AuditReceipt"},
        },
    }


def _number_result_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["input", "phoneNumber", "status"],
        "additionalProperties": False,
        "x-ms-summary": "Result",
        "properties": {
            "input": {"type": "string", "x-ms-summary": "Input", "description": "The number as it was given."},
            "phoneNumber": {
                "type": "string",
                "x-nullable": True,
                "x-ms-summary": "Phone number (E.164)",
                "description": "The number in E.164; empty when it could not be read as a phone number.",
            },
            "status": {
                "type": "string",
                "enum": ["succeeded", "invalid", "failed"],
                "x-ms-summary": "Status",
                "description": "succeeded, invalid (never sent to ACS), or failed (retrying later is safe).",
            },
            "optedOut": {
                "type": "boolean",
                "x-ms-summary": "Opted out",
                "description": "Check only: whether the number is on the opt-out list.",
            },
            "error": {"$ref": "#/definitions/NumberError"},
            "details": {"$ref": "#/definitions/ProviderDetails"},
        },
    }


def _number_error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "message"],
        "additionalProperties": False,
        "x-ms-summary": "Error",
        "description": "Why the number did not succeed.",
        "properties": {
            "code": {"type": "string", "x-ms-summary": "Error code", "description": "A machine-readable code."},
            "message": {"type": "string", "x-ms-summary": "Error message", "description": "A readable explanation."},
        },
    }


def _summary_schema() -> dict[str, Any]:
    counts = {
        "total": ("Total", "How many numbers were given."),
        "succeeded": ("Succeeded", "How many numbers succeeded."),
        "invalid": ("Invalid", "How many numbers were invalid and not sent to ACS."),
        "failed": ("Failed", "How many numbers failed; calling again for them is safe."),
    }
    return {
        "type": "object",
        "required": list(counts),
        "additionalProperties": False,
        "x-ms-summary": "Summary",
        "description": "How many numbers ended in each status.",
        "properties": {
            name: {"type": "integer", "format": "int32", "minimum": 0, "x-ms-summary": label, "description": text}
            for name, (label, text) in counts.items()
        },
    }


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["phoneNumber", "sender", "optedOut"],
        "additionalProperties": False,
        "properties": {
            "phoneNumber": {"type": "string", "x-ms-summary": "Phone number (E.164)",
                            "description": "The number in E.164."},
            "sender": {"type": "string", "x-ms-summary": "Sender", "description": "The sender checked for."},
            "optedOut": {"type": "boolean", "x-ms-summary": "Opted out",
                         "description": "Whether the number is on the sender's opt-out list."},
            "audit": {"$ref": "#/definitions/AuditReceipt"},
        },
    }


def _audit_receipt_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "x-ms-summary": "Audit",
        "description": "How the change was audited; absent when the action is not audited (a check, by default).",
        "properties": {
            "status": {"type": "string", "enum": ["accepted", "disabled"], "x-ms-summary": "Audit status",
                       "description": "accepted: the operation was recorded before ACS was called; disabled: this "
                                      "gateway keeps no audit trail (see reason)."},
            "operationId": {"type": "string", "x-ms-summary": "Operation id",
                            "description": "The operation's audit record: GET /operations/{operationId}."},
            "acceptedAt": {"type": "string", "format": "date-time", "x-ms-summary": "Accepted at",
                           "description": "When the gateway accepted the operation, in UTC."},
            "outcomeRecorded": {"type": "boolean", "x-ms-summary": "Outcome recorded",
                                "description": "Whether ACS's answer is recorded too; when false, the numbers' "
                                               "history shows the outcome unknown."},
            "reason": {"type": "string", "x-nullable": True, "x-ms-summary": "Why disabled",
                       "description": "Why the audit trail is disabled."},
        },
    }


def _audit_operation_schema() -> dict[str, Any]:
    def count(label: str) -> dict[str, Any]:
        return {"type": "integer", "format": "int32", "minimum": 0, "x-ms-summary": label,
                "description": f"Numbers {label.lower()}."}

    text = _nullable_text
    properties = {
        "operationId": {"type": "string", "x-ms-summary": "Operation id", "description": "The operation's id."},
        "acceptedAt": {"type": "string", "format": "date-time", "x-ms-summary": "Accepted at",
                       "description": "When the gateway accepted the operation (before ACS was called), in UTC."},
        "completedAt": {"type": "string", "format": "date-time", "x-nullable": True, "x-ms-summary": "Completed at",
                        "description": "When ACS's answer was recorded; null when it never was."},
        "action": {"type": "string", "enum": ["add", "remove", "check"], "x-ms-summary": "Action",
                   "description": "What was asked of ACS."},
        "sender": {"type": "string", "x-ms-summary": "Sender", "description": "The sender whose list it was."},
        "channel": {"type": "string", "enum": ["http", "queue", "keyword"], "x-ms-summary": "Channel",
                    "description": "How the request arrived: http, queue, or keyword (the person texted STOP, "
                                   "START...)."},
        "endUser": {"type": "boolean", "x-ms-summary": "By the person",
                    "description": "True when the person made the change themselves by texting a keyword."},
        **_caller_properties(),
        "correlationId": {"type": "string", "x-ms-summary": "Correlation id",
                          "description": "The HTTP request's trace id or the queue message's correlationId."},
        "traceId": text("Trace id", "The HTTP request's W3C trace id."),
        "reason": text("Reason", "The reason the caller gave."),
        "provider": text("Provider", "Who keeps the sender's list: acs or aws (null in records from before AWS)."),
        "numbers": {"type": "integer", "format": "int32", "minimum": 0, "x-ms-summary": "Numbers",
                    "description": "How many distinct numbers were sent to ACS."},
        "invalidInputs": {"type": "integer", "format": "int32", "minimum": 0, "x-ms-summary": "Invalid inputs",
                          "description": "Inputs that were not phone numbers (never sent to ACS)."},
        "outcome": {"type": "string", "enum": ["recorded", "unknown"], "x-ms-summary": "Outcome",
                    "description": "recorded: ACS's answer is recorded; unknown: it never was (the worker stopped "
                                   "mid-call), so every number counts as unknown."},
        "errorCode": text("Error code", "Why the operation failed as a whole, when it did."),
        "counts": {
            "type": "object",
            "required": ["succeeded", "invalid", "failed", "unknown"],
            "additionalProperties": False,
            "x-ms-summary": "Counts",
            "description": "Numbers per outcome.",
            "properties": {"succeeded": count("Succeeded"), "invalid": count("Invalid"), "failed": count("Failed"),
                           "unknown": count("Unknown")},
        },
        "indexing": {
            "type": "object",
            "required": ["state", "indexedNumbers", "indexedAt"],
            "additionalProperties": False,
            "x-ms-summary": "Indexing",
            "description": "Whether every number's history shows this operation yet.",
            "properties": {
                "state": {"type": "string", "enum": ["pending", "indexedUnknown", "indexed"],
                          "x-ms-summary": "Indexing state",
                          "description": "pending; indexedUnknown (the history shows the outcome unknown); indexed."},
                "indexedNumbers": count("Indexed"),
                "indexedAt": {"type": "string", "format": "date-time", "x-nullable": True,
                              "x-ms-summary": "Indexed at", "description": "When the history was last written."},
            },
        },
    }
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "x-ms-summary": "Audit operation",
        "properties": properties,
    }


def _nullable_text(label: str, description: str) -> dict[str, Any]:
    return {"type": "string", "x-nullable": True, "x-ms-summary": label, "description": description}


def _caller_properties() -> dict[str, Any]:
    text = _nullable_text
    return {
        "caller": {"type": "string", "x-ms-summary": "Caller",
                   "description": "The verified Entra principal, else function-key; or the queue the request came "
                                  "from."},
        "callerId": text("Caller id", "The verified Entra principal's object id."),
        "callerVerified": {"type": "boolean", "x-ms-summary": "Caller verified",
                           "description": "Whether App Service authentication vouched for the caller."},
        "claimedCaller": text("Claimed caller", "A principal name the request stated without proof."),
        "claimedCallerId": text("Claimed caller id", "A principal id the request stated without proof."),
    }


def _history_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["value"],
        "additionalProperties": False,
        "properties": {
            "value": {
                "type": "array",
                "items": {"$ref": "#/definitions/AuditRecord"},
                "x-ms-summary": "Records",
                "description": "The audit records of this page, newest first.",
            },
            "nextLink": {
                "type": "string",
                "x-ms-summary": "Next page link",
                "x-ms-visibility": "internal",
                "description": "The absolute URL of the next page; absent on the last page.",
            },
        },
    }


def _audit_record_schema() -> dict[str, Any]:
    def text(label: str, description: str, *, nullable: bool = False) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "x-ms-summary": label, "description": description}
        if nullable:
            schema["x-nullable"] = True
        return schema

    properties = {
        "occurredAt": {"type": "string", "format": "date-time", "x-ms-summary": "Occurred at",
                       "description": "When the gateway accepted the operation (before ACS was called), in UTC."},
        "operationId": text("Operation id", "The operation's audit record: GET /operations/{operationId}."),
        "action": {"type": "string", "enum": ["add", "remove", "check"], "x-ms-summary": "Action",
                   "description": "What was asked of ACS: add, remove or check."},
        "sender": text("Sender", "The sender whose opt-out list it was."),
        "phoneNumber": text("Phone number (E.164)", "The number, in E.164."),
        "outcome": {"type": "string", "enum": ["succeeded", "invalid", "failed", "unknown"], "x-ms-summary": "Outcome",
                    "description": "succeeded, invalid (refused by ACS), failed, or unknown (ACS's answer was never "
                                   "recorded)."},
        "upstreamStatus": {"type": "integer", "format": "int32", "x-nullable": True,
                           "x-ms-summary": "ACS status", "description": "The HTTP status ACS gave for this number."},
        "errorCode": text("Error code", "Why it did not succeed, when it did not.", nullable=True),
        "optedOut": {"type": "boolean", "x-nullable": True, "x-ms-summary": "Opted out",
                     "description": "Check only: whether the number was on the opt-out list."},
        **_caller_properties(),
        "channel": {"type": "string", "enum": ["http", "queue", "keyword"], "x-ms-summary": "Channel",
                    "description": "How the request arrived: http, queue, or keyword (the person texted STOP, "
                                   "START...)."},
        "endUser": {"type": "boolean", "x-ms-summary": "By the person",
                    "description": "True when the person made the change themselves by texting a keyword."},
        "correlationId": text("Correlation id", "The trace id of the HTTP request or the queue message's "
                              "correlationId (1 to 128 of A-Z a-z 0-9 . _ : -), else its message id."),
        "traceId": text("Trace id", "The HTTP request's W3C trace id.", nullable=True),
        "reason": text("Reason", "The reason the caller gave.", nullable=True),
        "provider": text("Provider", "Who keeps the sender's list: acs or aws (null in records from before AWS).",
                         nullable=True),
        "details": {**_provider_details_schema(), "x-nullable": True},
    }
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "x-ms-summary": "Audit record",
        "properties": properties,
    }


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code", "traceId"],
        "additionalProperties": False,
        "description": "Problem details (RFC 9457), with a machine-readable code.",
        "properties": {
            "type": {"type": "string", "x-ms-summary": "Problem type", "description": "A URI for the kind of problem."},
            "title": {"type": "string", "x-ms-summary": "Title", "description": "A short summary of the problem."},
            "status": {"type": "integer", "format": "int32", "x-ms-summary": "HTTP status",
                       "description": "The HTTP status code."},
            "detail": {"type": "string", "x-ms-summary": "Detail", "description": "What went wrong, for people."},
            "code": {"type": "string", "x-ms-summary": "Error code", "description": "What went wrong, for code."},
            "errors": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "x-ms-summary": "Field errors",
                "description": "The messages for each field that failed validation.",
            },
            "traceId": {"type": "string", "x-ms-summary": "Trace id",
                        "description": "Identifies the request in the gateway's logs."},
            "checks": {"$ref": "#/definitions/ReadinessChecks"},
        },
    }


def _readiness_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "checks"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["ready"], "x-ms-summary": "Status",
                       "description": "Always ready in a 200 answer."},
            "checks": {"$ref": "#/definitions/ReadinessChecks"},
        },
    }


def _readiness_checks_schema() -> dict[str, Any]:
    labels = {"settings": "Settings", "credentials": "Credentials", "acs": "Azure Communication Services",
              "storage": "Storage"}
    return {
        "type": "object",
        "required": list(labels),
        "additionalProperties": False,
        "x-ms-summary": "Checks",
        "description": "One entry per dependency (in readiness answers only).",
        "properties": {name: {"$ref": "#/definitions/DependencyCheck"} for name in labels},
    }


def _dependency_check_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status"],
        "additionalProperties": False,
        "x-ms-summary": "Dependency check",
        "description": "The outcome of one dependency's check.",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "failed", "skipped"], "x-ms-summary": "Check status",
                       "description": "skipped when a dependency it needs failed first."},
            "code": {"type": "string", "x-ms-summary": "Check error code",
                     "description": "What failed, for code, such as AcsUnavailable."},
            "detail": {"type": "string", "x-ms-summary": "Check detail", "description": "What failed, for people."},
            "durationMs": {"type": "number", "minimum": 0, "x-ms-summary": "Check duration (ms)",
                           "description": "How long the check took."},
        },
    }


# -- security ----------------------------------------------------------------------------------


def _security_definitions(auth: Auth) -> dict[str, Any]:
    if auth == "function-key":
        return {"functionKey": {"type": "apiKey", "in": "header", "name": FUNCTION_KEY_HEADER}}
    # Power Platform exchanges the code for a token itself; these URLs are what it expects to see.
    return {"entraId": {
        "type": "oauth2",
        "flow": "accessCode",
        "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
        "tokenUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
        "scopes": {},
    }}


# -- command line ------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> str:
    """The committed form: stable key order and indentation, so regenerating changes nothing."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optouts.contract.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=PLACEHOLDER_HOST, help="the function app's host name")
    parser.add_argument("--auth", choices=["function-key", "entra-id"], default="function-key")
    arguments = parser.parse_args(argv)
    sys.stdout.write(render(build_document(arguments.host, auth=arguments.auth)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
