"""The audit trail's functions: operation records over HTTP, and the indexer on its queue."""

from __future__ import annotations

import logging

import azure.functions as func

from optouts.config import STORAGE_CONNECTION, audit_index_queue_name

from .queue_api import max_dequeue_count
from .responses import guarded, json_response, require_query

blueprint = func.Blueprint()
_logger = logging.getLogger("optouts.http")


@blueprint.function_name("GetOperation")
@blueprint.route(route="operations/{operationId}", methods=["GET"])
@guarded
def get_operation(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    from azure.core.exceptions import AzureError

    from optouts.audit import OPERATION_ID_PATTERN, audit_unavailable_problem, describe_error
    from optouts.problems import Problem, validation_problem
    from optouts.runtime import get_audit_trail

    require_query(req)
    operation_id = req.route_params.get("operationId", "")
    if not OPERATION_ID_PATTERN.fullmatch(operation_id):
        raise validation_problem({"operationId": ["must be an operation id as an answer's audit object gives it"]})
    try:
        record = get_audit_trail().operation(operation_id)
    except (AzureError, ValueError, KeyError, TypeError) as error:
        _logger.error("audit operation record unavailable: %s", describe_error(error))
        raise audit_unavailable_problem("the audit trail could not be read; retry later") from None
    if record is None:
        raise Problem(404, "OperationNotFound", "Operation not found", "no operation with this id was accepted")
    return json_response(record, trace_id=trace_id)


@blueprint.function_name("IndexAuditTrail")
@blueprint.queue_trigger(arg_name="msg", queue_name=audit_index_queue_name(), connection=STORAGE_CONNECTION)
def index_audit_trail(msg: func.QueueMessage) -> None:
    from optouts.runtime import get_audit_indexer

    get_audit_indexer().process(msg.get_body(), dequeue_count=msg.dequeue_count or 1,
                                max_dequeue_count=max_dequeue_count())
