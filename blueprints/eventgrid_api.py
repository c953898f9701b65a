"""Event Grid-triggered function: ACS's SMSReceived events, for the end user's own STOP and START.

The Functions host serves the webhook (`/runtime/webhooks/eventgrid?functionName=RecordEndUserKeyword`),
answers Event Grid's validation handshakes, and calls this function once per event; an exception
makes it answer 500, so Event Grid delivers the event again (and, past its retries, dead-letters it).
The logic is in optouts.usecases.end_user_keywords, reached through the composition root.
"""

from __future__ import annotations

import azure.functions as func

from optouts import runtime

blueprint = func.Blueprint()

FUNCTION_NAME = "RecordEndUserKeyword"


@blueprint.function_name(FUNCTION_NAME)
@blueprint.event_grid_trigger(arg_name="event")
def record_end_user_keyword(event: func.EventGridEvent) -> None:
    # The worker hands a CloudEvent for an event in the CloudEvents schema, whatever the annotation
    # says (it must name one class; the worker accepts either).
    received: func.EventGridEvent | func.CloudEvent = event
    if isinstance(received, func.CloudEvent):
        runtime.handle_sms_event(received.id, received.type, received.get_json(), received.time, "cloudevents")
    else:
        runtime.handle_sms_event(received.id, received.event_type, received.get_json(), received.event_time,
                                 "eventgrid")
