"""Jobs: lists of any size (docs/jobs.md). The HTTP routes and the work queue's trigger."""

from __future__ import annotations

import azure.functions as func

from optouts import runtime
from optouts.config import STORAGE_CONNECTION, jobs_queue_name
from optouts.domain.commands import (
    MAX_REASON_LENGTH,
    MAX_SENDER_LENGTH,
    REASON_RULE,
    decode_json,
    is_known_region,
    is_printable_text,
    resolve_sender,
)
from optouts.domain.numberlists import media_type_format
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem, validation_problem

from .queue_api import Redelivery, max_dequeue_count
from .responses import JSON_TYPES, guarded, json_response, require_query

blueprint = func.Blueprint()

_UPLOAD_QUERY = frozenset({"action", "sender", "region", "reason"})
_BLOB_FIELDS = frozenset({"action", "sender", "region", "reason", "blobUrl"})
_REPORT_QUERY = frozenset({"delivery"})
_ACTIONS = ", ".join(operation.value for operation in Operation)


@blueprint.function_name("CreateJob")
@blueprint.route(route="jobs", methods=["POST"])
@guarded
def create_job(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    media = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    list_format = media_type_format(media)
    jobs = runtime.get_job_service()
    context = runtime.http_audit_context(req.headers, trace_id)
    if list_format is not None:
        require_query(req, _UPLOAD_QUERY)
        body = req.get_body()
        if len(body) > jobs.settings.max_body_bytes:
            raise Problem(413, "BodyTooLarge", "Payload too large",
                          f"the body is larger than {jobs.settings.max_body_bytes} bytes; upload the list to the "
                          "uploads container and send its blobUrl")
        action, sender, region, reason = _job_fields(dict(req.params))
        job = jobs.create_from_upload(action, sender, region, reason, [body], list_format, context)
    elif media in JSON_TYPES or media.endswith("+json"):
        require_query(req)
        payload = decode_json(req.get_body(), max_bytes=runtime.get_settings().max_body_bytes)
        if not isinstance(payload, dict):
            raise validation_problem({"$": ["the body must be a JSON object"]})
        unknown = [str(name)[:64] for name in payload if name not in _BLOB_FIELDS]
        if unknown:
            raise validation_problem({name: [f"unknown field; expected one of {', '.join(sorted(_BLOB_FIELDS))}"]
                                      for name in unknown[:5]})
        blob_url = payload.get("blobUrl")
        if not isinstance(blob_url, str) or not blob_url.strip():
            raise validation_problem({"blobUrl": ["is required: the URL or name of a blob in the uploads container"]})
        action, sender, region, reason = _job_fields(payload)
        job = jobs.create_from_blob(action, sender, region, reason, blob_url, context)
    else:
        raise Problem(415, "UnsupportedMediaType", "Unsupported media type",
                      "send the numbers as text/csv or application/x-ndjson, or a JSON object with a blobUrl "
                      "as application/json")
    return json_response(jobs.describe(job), status=202, trace_id=trace_id,
                         headers={"Location": f"/api/jobs/{job.id}"})


def _job_fields(values: dict[str, object]) -> tuple[Operation, str, str, str | None]:
    errors: dict[str, list[str]] = {}
    texts: dict[str, str | None] = {}
    for name in ("action", "sender", "region", "reason"):
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = ["must be a string"]
            value = None
        texts[name] = (value or "").strip() or None
    action: Operation | None = None
    try:
        action = Operation((texts["action"] or "").lower())
    except ValueError:
        errors["action"] = [f"is required: one of {_ACTIONS}"]
    settings = runtime.get_settings()
    region = (texts["region"] or settings.default_region).upper()
    if len(region) != 2 or not region.isalpha() or not is_known_region(region):
        errors["region"] = ["must be a two-letter ISO 3166 region code such as US or GB"]
    reason = texts["reason"]
    if reason is not None and (len(reason) > MAX_REASON_LENGTH or not is_printable_text(reason)):
        errors["reason"] = [f"must be {REASON_RULE}"]
    sender_text = texts["sender"]
    if sender_text is not None and len(sender_text) > MAX_SENDER_LENGTH:
        errors["sender"] = [f"must be at most {MAX_SENDER_LENGTH} characters"]
    if errors:
        raise validation_problem(errors)
    assert action is not None  # nosec B101 - narrows the type; errors raised above
    return action, resolve_sender(sender_text, settings), region, reason


@blueprint.function_name("GetJob")
@blueprint.route(route="jobs/{jobId}", methods=["GET"])
@guarded
def get_job(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    require_query(req)
    jobs = runtime.get_job_service()
    job = jobs.get(req.route_params.get("jobId", ""))
    return json_response(jobs.describe(job), trace_id=trace_id)


@blueprint.function_name("CancelJob")
@blueprint.route(route="jobs/{jobId}", methods=["DELETE"])
@guarded
def cancel_job(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    require_query(req)
    jobs = runtime.get_job_service()
    job = jobs.cancel(req.route_params.get("jobId", ""))
    return json_response(jobs.describe(job), trace_id=trace_id)


@blueprint.function_name("GetJobReport")
@blueprint.route(route="jobs/{jobId}/report", methods=["GET"])
@guarded
def get_job_report(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    require_query(req, _REPORT_QUERY)
    delivery = (req.params.get("delivery") or "stream").strip().lower()
    if delivery not in ("stream", "sas"):
        raise validation_problem({"delivery": ["must be stream or sas"]})
    jobs = runtime.get_job_service()
    job_id = req.route_params.get("jobId", "")
    if delivery == "sas":
        return json_response(jobs.report_sas(job_id), trace_id=trace_id)
    data = jobs.report(job_id)
    return func.HttpResponse(data, status_code=200, mimetype="text/csv", charset="utf-8",
                             headers={"x-trace-id": trace_id,
                                      "Content-Disposition": f'attachment; filename="job-{job_id}.csv"'})


@blueprint.function_name("ProcessJobMessage")
@blueprint.queue_trigger(arg_name="msg", queue_name=jobs_queue_name(), connection=STORAGE_CONNECTION)
def process_job_message(msg: func.QueueMessage) -> None:
    reason = runtime.process_job_message(msg.get_body(), msg.dequeue_count or 1, max_dequeue_count())
    if reason is not None:
        raise Redelivery(reason)
