"""The audit trail's functions: operation records over HTTP, and the indexer on its queue."""

from __future__ import annotations

import azure.functions as func

# Light modules only, plus the composition root, as in http_api: the Storage SDKs are reached
# through optouts.runtime.
from optouts import runtime
from optouts.config import STORAGE_CONNECTION, audit_index_queue_name

from .queue_api import max_dequeue_count
from .responses import guarded, json_response, require_query

blueprint = func.Blueprint()


@blueprint.function_name("GetOperation")
@blueprint.route(route="operations/{operationId}", methods=["GET"])
@guarded
def get_operation(req: func.HttpRequest, trace_id: str) -> func.HttpResponse:
    require_query(req)
    record = runtime.read_operation(req.route_params.get("operationId", ""))
    return json_response(record, trace_id=trace_id)


@blueprint.function_name("IndexAuditTrail")
@blueprint.queue_trigger(arg_name="msg", queue_name=audit_index_queue_name(), connection=STORAGE_CONNECTION)
def index_audit_trail(msg: func.QueueMessage) -> None:
    runtime.get_audit_indexer().process(msg.get_body(), dequeue_count=msg.dequeue_count or 1,
                                        max_dequeue_count=max_dequeue_count())
