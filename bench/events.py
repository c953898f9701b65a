"""Change events' throughput: operations journalled on Azurite, then indexed by the real
IndexAuditTrail function (as the host hands it each index message), with the events queue sink on
and with it off, against Azurite's raw rate for sending the same number of queue messages of the
same size from as many threads as the sink uses.

events/s through the function = events sent / indexing time with the sink on. The difference with
the sink off is what the events themselves cost; the raw rate is the ceiling Azurite sets.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SENDER = "+18005550100"


def _journal(trail: Any, operations: int, numbers: int, prefix: int) -> list[bytes]:
    """`operations` adds of `numbers` numbers each, every number succeeded; their index messages."""
    from optouts.audit.callers import AuditContext
    from optouts.audit.trail import NumberOutcome, index_message

    bodies = []
    for op in range(operations):
        batch = [f"+1{prefix:03d}{op:03d}{n:04d}" for n in range(numbers)]
        intent = trail.begin("add", SENDER, batch, AuditContext("http", "bench", f"bench-{op}"), None, provider="acs")
        trail.finish(intent, dict.fromkeys(batch, NumberOutcome("succeeded", 200)))
        bodies.append(json.dumps(index_message(intent.operation_id, "outcome")).encode())
    return bodies


def _index_all(bodies: list[bytes]) -> float:
    import azure.functions as func

    import function_app
    from devtools.indexing import indexed_functions

    function = indexed_functions(function_app.app)["IndexAuditTrail"].get_user_function()
    started = time.perf_counter()
    for body in bodies:
        function(func.QueueMessage(id=uuid.uuid4().hex, body=body))
    return time.perf_counter() - started


def _raw_send_rate(connection_string: str, count: int, text: str, concurrency: int) -> float:
    from azure.storage.queue import QueueClient

    from optouts.azure.storage import transport_options

    queue = QueueClient.from_connection_string(connection_string, "bench-raw-events", **transport_options({}))
    queue.create_queue()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: queue.send_message(text, time_to_live=-1), range(count)))
    return count / (time.perf_counter() - started)


def _queued(connection_string: str, name: str) -> int:
    from azure.storage.queue import QueueClient

    try:
        count = QueueClient.from_connection_string(connection_string, name).get_queue_properties()
    except Exception:  # never created: nothing was sent
        return 0
    return int(count.approximate_message_count or 0)


def events_throughput(smoke: bool) -> dict[str, Any]:
    from devtools.azurite import Azurite
    from optouts import runtime
    from optouts.audit.sinks import MAX_IN_FLIGHT
    from optouts.audit.trail import AuditTrail, storage_for

    operations, numbers = (3, 20) if smoke else (20, 500)
    saved = dict(os.environ)
    names = {"table": "benchevents", "container": "bench-events-operations", "queue": "bench-events-index"}
    seconds: dict[str, float] = {}
    try:
        with Azurite() as azurite:
            os.environ.update({
                "AzureWebJobsStorage": azurite.connection_string, "OPTOUT_AUDIT_TABLE": names["table"],
                "OPTOUT_AUDIT_CONTAINER": names["container"], "OPTOUT_AUDIT_INDEX_QUEUE": names["queue"],
                "OPTOUT_EVENTS_QUEUE": "bench-events",
            })
            trail = AuditTrail(storage_for(container=names["container"], table=names["table"], queue=names["queue"]),
                               reconcile_delay=3600)
            # Warm (imports, the table and containers created), not timed and with no events.
            os.environ["OPTOUT_EVENTS_SINKS"] = "none"
            runtime.reset()
            _index_all(_journal(trail, 1, numbers, 312))
            for mode, prefix in (("none", 206), ("queue", 425)):
                bodies = _journal(trail, operations, numbers, prefix)
                os.environ["OPTOUT_EVENTS_SINKS"] = mode
                runtime.reset()
                seconds[mode] = _index_all(bodies)
            trail.close()
            sent = _queued(azurite.connection_string, "bench-events")
            sample = json.dumps({"specversion": "1.0", "id": "x" * 57, "data": {"pad": "y" * 560}})
            raw = _raw_send_rate(azurite.connection_string, operations * numbers, sample, MAX_IN_FLIGHT)
            runtime.reset()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    events = operations * numbers
    return {
        "operations": operations, "numbers_per_operation": numbers, "events_expected": events, "events_sent": sent,
        "seconds_without_events": seconds["none"], "seconds_with_events": seconds["queue"],
        "events_per_second": events / seconds["queue"],
        "event_cost_per_second": events / max(seconds["queue"] - seconds["none"], 1e-9),
        "azurite_send_per_second": raw, "concurrency": MAX_IN_FLIGHT,
    }


def render(results: dict[str, Any]) -> list[str]:
    r = results
    ratio = r["events_per_second"] / r["azurite_send_per_second"]
    return [
        "",
        "## 8. Change events",
        "",
        f"{r['operations']} journalled adds × {r['numbers_per_operation']} numbers, each indexed by the IndexAuditTrail "
        f"function on Azurite, the events queue sink on ({r['events_sent']} of {r['events_expected']} events queued) "
        "and off.",
        f"- indexing with events: {r['seconds_with_events']:.2f} s, without: {r['seconds_without_events']:.2f} s; "
        f"**{r['events_per_second']:.0f} events/s** through the function, history included "
        f"({r['event_cost_per_second']:.0f} events/s counting the events' share of the time alone).",
        f"- Azurite's raw send of as many messages of the same size from {r['concurrency']} threads: "
        f"{r['azurite_send_per_second']:.0f} messages/s; through the function / raw = **{ratio:.2f}x**.",
    ]
