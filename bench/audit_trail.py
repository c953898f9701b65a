"""The audit trail's costs, with the ACS emulator at a realistic latency and Azurite for storage:

1. a fully audited bulk remove through the HTTP function against the same call with the audit off
   (budget: at most 1.3x); the two alternate, run by run, so machine noise hits both alike;
2. the lag from each audited answer until every number's history is readable: the indexer runs
   as the queue function would (polling the index queue), and a number counts as readable when the
   entity-group transaction holding its record has committed (budget: p99 at most 10 s);
3. queued messages through the local host with the indexer function running beside the request
   function: every operation must end fully audited (its index marker says every number's outcome
   is in the history).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from typing import Any

from devtools.azurite import azurite_version

from .measure import summarize
from .processes import emulator_process

SENDER = "+18005550100"
LATENCY_MS = 50.0
#: A bound on each wait, not an expectation: 500 x 1,000 numbers is 500,000 history entities for Azurite.
WAIT_SECONDS = 3600


def _numbers(count: int, prefix: str) -> list[str]:
    return [f"+1{prefix}{n:07d}" for n in range(count)]


def _configure(azurite: Any, acs: str, names: dict[str, str], *, audit: bool, max_numbers: int) -> None:
    from optouts import runtime

    os.environ.update({
        "ACS_CONNECTION_STRING": acs, "OPTOUT_DEFAULT_SENDER": SENDER, "AzureWebJobsStorage": azurite.connection_string,
        "OPTOUT_AUDIT_WRITES": str(audit).lower(), "OPTOUT_AUDIT_TABLE": names["table"],
        "OPTOUT_AUDIT_CONTAINER": names["container"], "OPTOUT_AUDIT_INDEX_QUEUE": names["queue"],
        "OPTOUT_MAX_NUMBERS": str(max(max_numbers, 100)), "OPTOUT_MAX_BODY_BYTES": str(4 * 1024 * 1024),
    })
    runtime.reset()


class PollingIndexer:
    """The index queue function as the host would run it, recording when each number's record committed."""

    def __init__(self, connection_string: str, names: dict[str, str]) -> None:
        from azure.storage.queue import QueueClient

        from optouts.audit.index import AuditIndexer
        from optouts.audit.trail import storage_for

        storage = storage_for(container=names["container"], table=names["table"], queue=names["queue"])
        original = storage.upsert_batch
        self.committed: dict[str, float] = {}  # phone number -> when its batch committed

        def recording(entities: Any) -> None:
            original(entities)
            now = time.perf_counter()
            for entity in entities:
                self.committed[entity["PhoneNumber"]] = now

        storage.upsert_batch = recording  # type: ignore[method-assign]
        self._indexer = AuditIndexer(storage, reconcile_delay=300)
        self._queue = QueueClient.from_connection_string(connection_string, names["queue"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PollingIndexer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._indexer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            handled = 0
            try:
                for message in self._queue.receive_messages(messages_per_page=16, visibility_timeout=60,
                                                            max_messages=16):
                    self._indexer.process(message.content.encode(), dequeue_count=message.dequeue_count)
                    self._queue.delete_message(message)
                    handled += 1
            except Exception:  # no queue yet, or a failure: the message comes back, as with the host
                pass
            if not handled:
                time.sleep(0.1)  # the host's minimum polling interval


def bulk_and_lag(count: int, runs: int) -> dict[str, Any]:
    import function_app
    from devtools.azurite import Azurite
    from devtools.indexing import indexed_functions

    from .client_overhead import host_request

    names = {"table": "benchaudit", "container": "bench-operations", "queue": "bench-audit-index"}
    samples: dict[bool, list[float]] = {True: [], False: []}
    lags: list[float] = []
    with Azurite() as azurite, emulator_process(LATENCY_MS) as acs:
        function = indexed_functions(function_app.app)["RemoveOptOuts"].get_user_function()
        with PollingIndexer(azurite.connection_string, names) as indexer:
            for run in range(runs):
                for audited in (False, True):
                    _configure(azurite, acs, names, audit=audited, max_numbers=count)
                    warm = _numbers(100, "206")
                    assert function(host_request(warm)).status_code == 200  # warm: not timed
                    # ...and its indexing finished, so it does not compete with the timed call.
                    deadline = time.perf_counter() + WAIT_SECONDS
                    while audited and not set(warm) <= indexer.committed.keys() and time.perf_counter() < deadline:
                        time.sleep(0.05)
                    numbers = _numbers(count, f"{425 + run % 500:03d}")
                    indexer.committed.clear()
                    started = time.perf_counter()
                    response = function(host_request(numbers))
                    answered = time.perf_counter()
                    assert response.status_code == 200, response.get_body()[:300]
                    samples[audited].append(answered - started)
                    if audited:
                        receipt = json.loads(response.get_body())["audit"]
                        assert receipt["status"] == "accepted" and receipt["outcomeRecorded"], receipt
                        deadline = answered + WAIT_SECONDS
                        while not set(numbers) <= indexer.committed.keys() and time.perf_counter() < deadline:
                            time.sleep(0.05)
                        lags += [indexer.committed[n] - answered for n in numbers if n in indexer.committed]
                        _check_history(numbers, receipt["operationId"])
        from optouts import runtime

        runtime.reset()
    lags.sort()
    audited_figure = summarize(f"remove {count} numbers, audit on", samples[True])
    off_figure = summarize(f"remove {count} numbers, audit off", samples[False])
    return {
        "count": count, "runs": runs, "latency_ms": LATENCY_MS,
        "audited": audited_figure, "off": off_figure, "ratio": audited_figure.median / off_figure.median,
        "indexed_numbers": len(lags), "expected_numbers": count * runs,
        "lag_p50": statistics.median(lags) if lags else float("nan"),
        "lag_p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan"),
        "lag_max": lags[-1] if lags else float("nan"),
    }


def _check_history(numbers: list[str], operation_id: str) -> None:
    """A sample of the numbers read back through the trail, as the history API reads them."""
    from optouts.runtime import get_audit_trail

    for number in numbers[:: max(1, len(numbers) // 20)]:
        page = get_audit_trail().history(SENDER, number, top=1)
        assert page.records and page.records[0].operation_id == operation_id, number


def queued(messages: int, numbers_per_message: int) -> dict[str, Any]:
    """`messages` queued removes of `numbers_per_message` numbers through the local host."""
    from azure.storage.blob import ContainerClient
    from azure.storage.queue import QueueClient

    from devtools.azurite import Azurite
    from devtools.localhost import LocalHost
    from optouts import runtime

    # The index queue's default name: the indexer function's trigger was bound to it at import.
    names = {"table": "benchqueued", "container": "bench-queued-operations", "queue": "optout-audit-index"}
    with Azurite() as azurite, emulator_process(LATENCY_MS) as acs:
        requests = QueueClient.from_connection_string(azurite.connection_string, "optout-requests")
        results = QueueClient.from_connection_string(azurite.connection_string, "optout-results")
        for client in (requests, results):
            client.create_queue()
        for n in range(messages):
            numbers = [f"+1{200 + n // 1000:03d}{n % 1000:03d}{k:04d}" for k in range(numbers_per_message)]
            requests.send_message(json.dumps({"action": "remove", "phoneNumbers": numbers,
                                              "correlationId": str(uuid.uuid4())}))
        runtime.reset()
        settings = {"AzureWebJobsStorage": azurite.connection_string, "ACS_CONNECTION_STRING": acs,
                    "OPTOUT_DEFAULT_SENDER": SENDER, "OPTOUT_AUDIT_WRITES": "true", "OPTOUT_AUDIT_TABLE": names["table"],
                    "OPTOUT_AUDIT_CONTAINER": names["container"], "OPTOUT_AUDIT_INDEX_QUEUE": names["queue"],
                    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100"}
        container = ContainerClient.from_connection_string(azurite.connection_string, names["container"])
        container.create_container()  # so that it can be watched before the first operation creates it
        fully_audited = completed = 0
        with LocalHost(settings=settings):
            started = time.perf_counter()
            deadline = started + WAIT_SECONDS
            while time.perf_counter() < deadline:  # bounded: a stuck run ends, and its counts say so
                completed = results.get_queue_properties().approximate_message_count or 0
                markers = [b.name for b in container.list_blobs() if b.name.endswith("/index.json")]
                if completed >= messages and len(markers) >= messages:
                    break
                time.sleep(0.5)
            processed = time.perf_counter() - started
        for name in (b.name for b in container.list_blobs() if b.name.endswith("/index.json")):
            marker = json.loads(container.download_blob(name).readall())
            fully_audited += marker["outcome"] == "recorded" and marker["indexedNumbers"] == numbers_per_message
        runtime.reset()
    return {"messages": messages, "numbers_per_message": numbers_per_message, "completed": completed,
            "fully_audited": fully_audited, "seconds": processed, "azurite": azurite_version()}


def _restoring_environ(run: Any) -> dict[str, Any]:
    saved = dict(os.environ)
    try:
        return run()  # type: ignore[no-any-return]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def audit_trail(smoke: bool) -> dict[str, Any]:
    return _restoring_environ(lambda: bulk_and_lag(count=300 if smoke else 10_000, runs=1 if smoke else 5))


def audit_queued(smoke: bool) -> dict[str, Any]:
    """Apart from audit_trail: Azurite's Table service takes the most time here (500,000 history entities)."""
    return _restoring_environ(lambda: queued(messages=4 if smoke else 500, numbers_per_message=20 if smoke else 1_000))


def render(results: dict[str, Any], q: dict[str, Any]) -> list[str]:
    return [
        "",
        "## 6. Audit trail",
        "",
        f"ACS emulator at {results['latency_ms']:g} ms latency, Azurite for storage; the audit on means the intent "
        "blob and reconcile message before ACS is called and the outcome blob and index message after.",
        "",
        "| what | runs | ms |",
        "| --- | --- | --- |",
        f"| {results['off'].name} | {results['off'].runs} | {results['off'].ms()} |",
        f"| {results['audited'].name} | {results['audited'].runs} | {results['audited'].ms()} |",
        "",
        f"- audited / off = **{results['ratio']:.2f}x** (budget ≤ 1.3)",
        f"- answer until history readable, over {results['indexed_numbers']} of {results['expected_numbers']} numbers: "
        f"p50 {results['lag_p50']:.2f} s, **p99 {results['lag_p99']:.2f} s** (budget ≤ 10 s), max "
        f"{results['lag_max']:.2f} s",
        f"- {q['messages']} queued messages × {q['numbers_per_message']} numbers through the local host: "
        f"{q['completed']} results, **{q['fully_audited']} fully audited** (budget: all), in {q['seconds']:.1f} s "
        f"(Azurite {q.get('azurite', 'unknown')})",
    ]
