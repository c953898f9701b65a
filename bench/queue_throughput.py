"""Queue throughput: messages of 10 numbers through Azurite and the local host, against
Azurite's own receive+delete rate for the same number of messages, in one run."""

from __future__ import annotations

import json
import time

from .processes import emulator_process

BATCH = 32
WAIT_SECONDS = 600


def azurite_receive_delete_rate(connection_string: str, count: int) -> float:
    """Messages per second Azurite sustains for receive + delete alone (the floor's ceiling)."""
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(connection_string, "bench-raw")
    queue.create_queue()
    for n in range(count):
        queue.send_message(json.dumps({"n": n}))
    done = 0
    started = time.perf_counter()
    deadline = started + WAIT_SECONDS
    while done < count and time.perf_counter() < deadline:
        for message in queue.receive_messages(messages_per_page=BATCH, max_messages=BATCH):
            queue.delete_message(message)
            done += 1
    return done / (time.perf_counter() - started)


def azurite_table_insert_rate(connection_string: str, count: int, concurrency: int = 8) -> float:
    """Entities per second Azurite's Table service takes from `concurrency` writers, as many
    as the audit trail uses: the ceiling of the audited queue path, which writes 10 per message."""
    from concurrent.futures import ThreadPoolExecutor

    from azure.data.tables import TableClient

    from optouts.azure.storage import transport_options

    # The audit trail's own transport settings, so the two figures compare like with like.
    table = TableClient.from_connection_string(connection_string, "benchinserts", **transport_options({}))
    table.create_table()

    def insert(n: int) -> None:
        table.create_entity({"PartitionKey": f"+1425{n:07d}", "RowKey": f"{n:019d}", "action": "remove"})

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(insert, range(count)))
    return count / (time.perf_counter() - started)


def gateway_rate(connection_string: str, acs_connection_string: str, count: int, *,
                 audit: bool = False) -> tuple[float, int]:
    """Messages per second from the first send being visible to the last result published;
    with `audit`, each message also writes its 10 audit records to Azurite's Table service."""
    from azure.storage.queue import QueueClient

    from devtools.localhost import LocalHost
    from optouts import runtime

    requests = QueueClient.from_connection_string(connection_string, "optout-requests")
    results = QueueClient.from_connection_string(connection_string, "optout-results")
    for client in (requests, results):
        try:
            client.create_queue()
        except Exception:  # exists
            pass
        client.clear_messages()  # an earlier run's results would count as this run's
    # Enqueue first, then start the host, so the figure is processing alone.
    for n in range(count):
        numbers = [f"+1425{n:04d}{k:03d}" for k in range(10)]
        requests.send_message(json.dumps({"action": "remove", "phoneNumbers": numbers, "correlationId": str(n)}))
    runtime.reset()
    settings = {"AzureWebJobsStorage": connection_string, "ACS_CONNECTION_STRING": acs_connection_string,
                "OPTOUT_DEFAULT_SENDER": "+18005550100", "OPTOUT_AUDIT_WRITES": str(audit).lower(),
                "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100"}
    seen = 0
    with LocalHost(settings=settings) as _host:
        started = time.perf_counter()
        deadline = started + WAIT_SECONDS
        # Counting, not reading, the results, and not too often: each look costs the host
        # Azurite's attention and this process's GIL (at 20 looks a second, a fifth of it).
        while seen < count and time.perf_counter() < deadline:
            seen = results.get_queue_properties().approximate_message_count or 0
            time.sleep(0.25 if seen < count * 0.9 else 0.02)
        elapsed = time.perf_counter() - started
    runtime.reset()
    return seen / elapsed, seen


def queue_throughput(count: int) -> dict[str, float]:
    from devtools.azurite import Azurite

    with Azurite() as azurite, emulator_process() as acs:
        raw = azurite_receive_delete_rate(azurite.connection_string, count)
        table_inserts = azurite_table_insert_rate(azurite.connection_string, count * 2)
        rate, completed = gateway_rate(azurite.connection_string, acs, count)
        audited_rate, audited_completed = gateway_rate(azurite.connection_string, acs, count, audit=True)
    return {"messages": count, "completed": completed, "gateway_per_second": rate, "azurite_per_second": raw,
            "audited_completed": audited_completed, "audited_gateway_per_second": audited_rate,
            "azurite_table_inserts_per_second": table_inserts}
