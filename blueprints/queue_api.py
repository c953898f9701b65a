"""Queue-triggered function: opt-out requests dropped on a Storage queue."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import azure.functions as func

from optouts import runtime
from optouts.config import requests_queue_name

blueprint = func.Blueprint()

#: The host's own default when host.json does not set maxDequeueCount.
HOST_DEFAULT_MAX_DEQUEUE_COUNT = 5
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def max_dequeue_count() -> int:
    """The host moves a message to the poison queue after this many failed deliveries;
    the function must know it to publish `failed` on the last one. Like the host, an
    `AzureFunctionsJobHost__...` app setting overrides host.json."""
    override = os.environ.get("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", "").strip()
    if override.isdigit():
        return int(override)
    return _host_json_max_dequeue_count()


@lru_cache(maxsize=1)
def _host_json_max_dequeue_count() -> int:
    try:
        host = json.loads(HOST_JSON.read_text(encoding="utf-8"))
        return int(host["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, ValueError, KeyError, TypeError):
        return HOST_DEFAULT_MAX_DEQUEUE_COUNT


@blueprint.function_name("ProcessOptOutRequest")
@blueprint.queue_trigger(
    arg_name="msg",
    queue_name=requests_queue_name(),
    connection="AzureWebJobsStorage",
)
def process_opt_out_request(msg: func.QueueMessage) -> None:
    reason = runtime.process_queue_message(msg.id or "", msg.get_body(), msg.dequeue_count or 1, max_dequeue_count())
    if reason is not None:
        # Raising is how a queue function asks the host for a redelivery: an expected outcome,
        # already logged in one line by the processor. Raised here so that the stack the host
        # logs with it is this one frame, not the processor's internals.
        raise Redelivery(reason)


class Redelivery(Exception):
    """The message is to be delivered again (or, on its last delivery, moved to poison)."""
