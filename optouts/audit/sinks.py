"""Where change events go: a Storage queue (one event per message), an Event Grid custom topic
(CloudEvents batches, with the app's managed identity), or both.

A sink raises when it could not take every event: the indexer then leaves the index message to be
delivered again, and every event of the operation is sent again with the same ids (at least once).

Writes are bounded by the operation: the queue takes one message per effective change (at most
OPTOUT_MAX_NUMBERS), `MAX_IN_FLIGHT` at a time; the topic takes them in batches of up to
`MAX_BATCH_EVENTS` events and `MAX_BATCH_BYTES`, well inside Event Grid's 1 MB per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.messaging import CloudEvent

from optouts.audit.events import DATA_CONTENT_TYPE, EVENT_SOURCE, ChangeEvent
from optouts.audit.trail import describe_error

if TYPE_CHECKING:
    from azure.eventgrid import EventGridPublisherClient
    from azure.storage.queue import QueueClient

_logger = logging.getLogger(__name__)

#: Queue messages sent at once for one operation.
MAX_IN_FLIGHT = 8
#: Event Grid takes up to 1 MB per request; a change event is well under 1 KB.
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 512 * 1024
#: A Storage queue message holds at most 64 KiB.
MAX_QUEUE_MESSAGE_BYTES = 64 * 1024


class EventSink(Protocol):
    name: str

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        """Deliver every event, or raise."""

    def close(self) -> None: ...


class _Lazy:
    """A client built on first use and kept; not kept when building fails, so that a fixed
    setting is picked up by the next delivery."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class QueueSink:
    """One message per event, its text the event in CloudEvents JSON: what the Azure Queues
    connector of Power Automate and Logic Apps reads as one trigger. Messages never expire
    (time_to_live=-1): a consumer that was down for a week still gets every change."""

    name = "queue"

    def __init__(self, queue: Callable[[], QueueClient]) -> None:
        self._queue = _Lazy(queue)
        self._pool = ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT, thread_name_prefix="events-queue")

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        queue: QueueClient = self._queue.get()
        texts = [orjson.dumps(event.to_json()).decode() for event in events]
        oversized = [text for text in texts if len(text.encode()) > MAX_QUEUE_MESSAGE_BYTES]
        if oversized:
            raise ValueError(f"{len(oversized)} change events exceed a queue message's 64 KiB")

        def send(text: str) -> None:
            try:
                queue.send_message(text, time_to_live=-1)
            except ResourceNotFoundError:  # Azurite starts empty; in Azure, infra/ creates the queue
                try:
                    queue.create_queue()
                except ResourceExistsError:
                    pass
                queue.send_message(text, time_to_live=-1)

        # list() waits for every send and raises the first failure.
        list(self._pool.map(send, texts))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._queue.close()


class EventGridSink:
    """CloudEvents batches to an Event Grid custom topic (input schema CloudEvents 1.0), signed in
    with the app's managed identity (role EventGrid Data Sender on the topic)."""

    name = "eventgrid"

    def __init__(self, client: Callable[[], EventGridPublisherClient]) -> None:
        self._client = _Lazy(client)

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        client: EventGridPublisherClient = self._client.get()
        for batch in _batches(events):
            client.send([_cloud_event(event) for event in batch])

    def close(self) -> None:
        self._client.close()


def _cloud_event(event: ChangeEvent) -> CloudEvent[dict[str, Any]]:
    return CloudEvent(source=EVENT_SOURCE, type=event.type, data=event.data, subject=event.subject, id=event.id,
                      time=event.time, datacontenttype=DATA_CONTENT_TYPE, extensions={"sequence": event.sequence})


def _batches(events: Sequence[ChangeEvent]) -> Iterator[Sequence[ChangeEvent]]:
    start, size = 0, 0
    for position, event in enumerate(events):
        length = len(orjson.dumps(event.to_json()))
        if position > start and (position - start >= MAX_BATCH_EVENTS or size + length > MAX_BATCH_BYTES):
            yield events[start:position]
            start, size = position, 0
        size += length
    if start < len(events):
        yield events[start:]


class EventPublisher:
    """Every configured sink gets every event. When one fails the others have still been tried;
    the failure is raised so the whole operation's events are sent again (ids unchanged)."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self.sinks = tuple(sinks)

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def publish(self, operation_id: str, events: Sequence[ChangeEvent]) -> None:
        failure: Exception | None = None
        for sink in self.sinks:
            try:
                sink.publish(events)
            except Exception as error:  # every sink is tried; the first failure is raised below
                _logger.warning("change events: %d events of operation %s not delivered to the %s sink (%s)",
                                len(events), operation_id, sink.name, describe_error(error))
                failure = failure or error
        if failure is not None:
            raise failure

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
