"""The queue processor on real storage: Azurite's results queue and results container, the ACS
emulator behind the service. Each harness has its own queue and container, so what a test reads
is only what its own messages produced."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from optouts.config import Settings
from optouts.providers.acs.settings import AcsSettings
from optouts.runtime import build_acs_client
from optouts.usecases.queued_requests import (
    QueuedMessage,
    QueuedRequestProcessor,
    ResultPublisher,
    RetryLater,
)
from optouts.usecases.service import OptOutService

from ..conftest import SENDER

MAX_DEQUEUE_COUNT = 3


class QueueHarness:
    def __init__(self, azurite: Azurite, acs: AcsEmulator, *, container: str | None = None,
                 max_numbers: int = 10_000) -> None:
        suffix = uuid.uuid4().hex[:12]
        self.azurite = azurite
        self.results = QueueClient.from_connection_string(azurite.connection_string, f"results-{suffix}")
        self.container_name = container or f"results-{suffix}"
        self.container = ContainerClient.from_connection_string(azurite.connection_string, self.container_name)
        self.blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        environ = {
            "ACS_CONNECTION_STRING": acs.connection_string,
            "OPTOUT_DEFAULT_SENDER": SENDER,
            "OPTOUT_MAX_NUMBERS": str(max_numbers),
            "OPTOUT_AUDIT_WRITES": "false",
        }
        settings = Settings.from_environ(environ)
        self.service = OptOutService(build_acs_client(settings, AcsSettings.from_environ(environ)))
        self.processor = QueuedRequestProcessor(
            settings=lambda: settings,
            service=lambda: self.service,
            publisher=ResultPublisher(self.results, self.container),
            max_dequeue_count=MAX_DEQUEUE_COUNT,
            time_budget=30,
        )

    def process(self, body: bytes | str, *, message_id: str | None = None, dequeue_count: int = 1) -> str:
        """The terminal state published (or "retry" when the host would deliver it again)."""
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        message = QueuedMessage(id=message_id or str(uuid.uuid4()), body=data, dequeue_count=dequeue_count)
        try:
            return self.processor.process(message)
        except RetryLater:
            return "retry"

    def take_results(self) -> list[dict[str, Any]]:
        """Every result message published so far, removed from the queue (bounded)."""
        results: list[dict[str, Any]] = []
        try:
            self.results.create_queue()
        except ResourceExistsError:
            pass
        for _ in range(200):
            batch = list(self.results.receive_messages(messages_per_page=32, max_messages=32))
            if not batch:
                break
            for message in batch:
                results.append(json.loads(message.content))
                self.results.delete_message(message)
        return results

    def container_names(self) -> set[str]:
        return {container.name for container in self.blobs.list_containers()}

    def close(self) -> None:
        self.service.provider.close()


@contextmanager
def queue_harness(azurite: Azurite, acs: AcsEmulator, **options: Any) -> Iterator[QueueHarness]:
    harness = QueueHarness(azurite, acs, **options)
    try:
        yield harness
    finally:
        harness.close()


def numbers(count: int) -> list[str]:
    return [f"+1425555{index:04d}" for index in range(count)]


def message(action: str = "check", count: int = 1, **fields: Any) -> str:
    return json.dumps({"action": action, "phoneNumbers": numbers(count), **fields})
