"""HTTP functions: the opt-out API under /api."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import azure.functions as func

# Light modules only, plus the composition root: the heavy side (the ACS client, phonenumbers,
# the Storage SDKs) is reached through optouts.runtime, so indexing the app stays quick.
from optouts import runtime
from optouts.contract.openapi import BASE_PATH
from optouts.domain.commands import (
    OptOutCommand,
    decode_json,
    is_known_region,
    parse_command,
    resolve_sender,
)
from optouts.domain.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem, validation_problem

from .openapi_api import FORWARDED_VARY, public_origin
from .responses import guarded, json_response, problem_response, require_json, require_query

blueprint = func.Blueprint()

_POST_ONLY_ROUTES = frozenset({"add", "remove", "check"})
_STATUS_QUERY = frozenset({"sender", "region"})
_HISTORY_QUERY = frozenset({"sender", "top", "continuationToken"})
_LISTING_QUERY = frozenset({"sender", "top", "continuationToken"})
#: One page of a provider's list (AWS answers at most 100 per DescribeOptedOutNumbers call).
LISTING_PAGE_SIZE = 100
#: AWS's NextToken is at most 1024 characters.
MAX_CONTINUATION_TOKEN = 1024


def _bulk(action: str, req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    require_json(req)
    settings = runtime.get_settings()
    payload = decode_json(req.get_body(), max_bytes=settings.max_body_bytes)
    command = parse_command(payload, settings, action=Operation(action))
    report = runtime.get_service().execute(command, audit=runtime.http_audit_context(req.headers, trace_id))
    return json_response(report.to_dict(), trace_id=trace_id)


@blueprint.function_name("RemoveOptOuts")
@blueprint.route(route="optouts/remove", methods=["POST"])
@guarded
def remove_opt_outs(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    return _bulk("remove", req, trace_id)


@blueprint.function_name("AddOptOuts")
@blueprint.route(route="optouts/add", methods=["POST"])
@guarded
def add_opt_outs(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    return _bulk("add", req, trace_id)


@blueprint.function_name("CheckOptOuts")
@blueprint.route(route="optouts/check", methods=["POST"])
@guarded
def check_opt_outs(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    return _bulk("check", req, trace_id)


@blueprint.function_name("GetOptOutStatus")
@blueprint.route(route="optouts/{phoneNumber}", methods=["GET"])
@guarded
def get_opt_out_status(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    if req.route_params.get("phoneNumber", "").lower() in _POST_ONLY_ROUTES:
        # `GET /api/optouts/check` would otherwise match this route and check the "number" check.
        return problem_response(Problem(405, "MethodNotAllowed", "Method not allowed",
                                        "this route only takes POST with a JSON body"),
                                trace_id=trace_id, headers={"Allow": "POST"})
    require_query(req, _STATUS_QUERY)
    settings = runtime.get_settings()
    phone_number = req.route_params.get("phoneNumber", "")
    region = (req.params.get("region") or "").strip().upper() or settings.default_region
    if len(region) != 2 or not region.isalpha() or not is_known_region(region):
        raise validation_problem({"region": ["must be a two-letter ISO 3166 region code such as US or GB"]})
    command = OptOutCommand(
        action=Operation.CHECK,
        phone_numbers=(phone_number,),
        # Flows send a blank query parameter for a field left empty: blank means "not given", as in bodies.
        sender=resolve_sender((req.params.get("sender") or "").strip() or None, settings),
        region=region,
    )
    report = runtime.get_service().execute(command, audit=runtime.http_audit_context(req.headers, trace_id))
    result = report.results[0]
    if result.status == "invalid" and result.error is not None:
        raise validation_problem({"phoneNumber": [result.error.message]}, code=result.error.code)
    if result.status == "failed" and result.error is not None:
        raise Problem(503, result.error.code, "Upstream temporarily unavailable",
                      "the sender's provider did not answer for this number; retry later", retry_after=30)
    body: dict[str, object] = {"phoneNumber": result.phone_number, "sender": command.sender,
                               "optedOut": result.opted_out}
    if report.audit is not None:  # only when OPTOUT_AUDIT_CHECKS=true
        body["audit"] = report.audit.to_dict()
    return json_response(body, trace_id=trace_id)


@blueprint.function_name("ListOptOuts")
@blueprint.route(route="optouts", methods=["GET"])
@guarded
def list_opt_outs(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    """Every number on the sender's opt-out list, a page at a time (AWS senders; 501 for ACS's)."""
    require_query(req, _LISTING_QUERY)
    settings = runtime.get_settings()
    sender = resolve_sender((req.params.get("sender") or "").strip() or None, settings)
    top = _listing_page_size(req.params.get("top"))
    token = req.params.get("continuationToken") or None
    if token is not None and len(token) > MAX_CONTINUATION_TOKEN:
        raise validation_problem({"continuationToken": ["is not a token this list gave"]},
                                 code="InvalidContinuationToken")
    page = runtime.get_service().list_opt_outs(sender, page_size=top, next_token=token)
    value = [{"phoneNumber": entry.phone_number, **({"details": dict(entry.details)} if entry.details else {})}
             for entry in page.numbers]
    body: dict[str, object] = {"sender": sender, "value": value}
    if page.next_token is not None:
        scheme, host = public_origin(req.url, req.headers)
        query = urlencode({"sender": sender, "top": top, "continuationToken": page.next_token})
        body["nextLink"] = f"{scheme}://{host}{BASE_PATH}/optouts?{query}"
    return json_response(body, trace_id=trace_id, headers={"Vary": FORWARDED_VARY})


def _listing_page_size(raw: str | None) -> int:
    text = (raw or "").strip()
    if not text:
        return LISTING_PAGE_SIZE
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= LISTING_PAGE_SIZE):
        raise validation_problem({"top": [f"must be a whole number from 1 to {LISTING_PAGE_SIZE}"]})
    return int(text)


@blueprint.function_name("GetOptOutHistory")
@blueprint.route(route="optouts/{phoneNumber}/history", methods=["GET"])
@guarded
def get_opt_out_history(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    require_query(req, _HISTORY_QUERY)
    settings = runtime.get_settings()
    sender = resolve_sender((req.params.get("sender") or "").strip() or None, settings)
    raw_number = req.route_params.get("phoneNumber", "")
    top = _page_size(req.params.get("top"))
    # Empty means the first page (as an unset field does in Power Automate); anything else must
    # be a token exactly as nextLink gave it.
    token = req.params.get("continuationToken") or None
    e164, page = runtime.read_history(sender, raw_number, settings.default_region, top, token)
    body: dict[str, object] = {"value": [record.to_dict() for record in page.records]}
    if page.continuation_token is not None:
        body["nextLink"] = _next_link(req, e164, sender, top, page.continuation_token)
    return json_response(body, trace_id=trace_id, headers={"Vary": FORWARDED_VARY})


def _page_size(raw: str | None) -> int:
    text = (raw or "").strip()
    if not text:
        return DEFAULT_PAGE_SIZE
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE_SIZE):
        raise validation_problem({"top": [f"must be a whole number from 1 to {MAX_PAGE_SIZE}"]})
    return int(text)


def _next_link(req: func.HttpRequest, phone_number: str, sender: str, top: int, token: str) -> str:
    """Absolute, as Power Automate's x-ms-pageable expects. The function key is left out on
    purpose: it is a secret, and the connector sends it as a header on every page."""
    scheme, host = public_origin(req.url, req.headers)
    query = urlencode({"sender": sender, "top": top, "continuationToken": token})
    return f"{scheme}://{host}{BASE_PATH}/optouts/{quote(phone_number, safe='')}/history?{query}"


@blueprint.function_name("Health")
@blueprint.route(route="health", methods=["GET"])
@guarded
def health(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    """Liveness: the process answers. Whether it can serve requests is /api/health/ready."""
    require_query(req)
    return json_response({"status": "ok", "configuration": runtime.describe_configuration()}, trace_id=trace_id)


@blueprint.function_name("Readiness")
@blueprint.route(route="health/ready", methods=["GET"])
@guarded
def readiness(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    """200 when settings, credentials, ACS and Storage all check out (cached 30 s);
    503 problem details naming each dependency that failed, with every check's status."""
    require_query(req)
    result = runtime.get_readiness().check()
    if result.ready:
        return json_response(result.to_dict(), trace_id=trace_id)
    problem = Problem(503, "NotReady", "Not ready", f"failed: {', '.join(result.failed)}", retry_after=30)
    return problem_response(problem, trace_id=trace_id, extensions={"checks": result.to_dict()["checks"]})
