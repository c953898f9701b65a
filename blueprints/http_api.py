"""HTTP functions: the opt-out API under /api."""

from __future__ import annotations

import azure.functions as func

from optouts.problems import Problem

from .responses import guarded, json_response, require_json

blueprint = func.Blueprint()


def _bulk(action: str, req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    # Imported on first use: the client's dependencies are not needed to index the app (cold start).
    from optouts.acs.models import Operation
    from optouts.commands import decode_json, parse_command
    from optouts.runtime import get_service, get_settings

    require_json(req)
    settings = get_settings()
    payload = decode_json(req.get_body(), max_bytes=settings.max_body_bytes)
    command = parse_command(payload, settings, action=Operation(action))
    report = get_service().execute(command)
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
    from optouts.acs.models import Operation
    from optouts.commands import OptOutCommand, is_known_region, resolve_sender
    from optouts.problems import validation_problem
    from optouts.runtime import get_service, get_settings

    settings = get_settings()
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
    result = get_service().execute(command).results[0]
    if result.status == "invalid" and result.error is not None:
        raise validation_problem({"phoneNumber": [result.error.message]}, code=result.error.code)
    if result.status == "failed" and result.error is not None:
        raise Problem(503, result.error.code, "Upstream temporarily unavailable",
                      "Azure Communication Services did not answer for this number; retry later", retry_after=30)
    body = {"phoneNumber": result.phone_number, "sender": command.sender, "optedOut": result.opted_out}
    return json_response(body, trace_id=trace_id)


@blueprint.function_name("Health")
@blueprint.route(route="health", methods=["GET"])
@guarded
def health(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    from optouts.runtime import get_settings

    return json_response({"status": "ok", "configuration": get_settings().describe()}, trace_id=trace_id)
