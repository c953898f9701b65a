"""Feeds queue-triggered functions from Storage (Azurite) with the host's semantics.

- polling: a batch of up to `batchSize` messages; a new batch is fetched once the
  messages in flight drop to `newBatchThreshold`; an empty queue is polled with an
  exponential backoff from 100 ms up to `maxPollingInterval`;
- a message is invisible while its function runs (a 10-minute lease, as the host
  takes, longer than any function timeout allowed here);
- success deletes the message; a failure makes it visible again after
  `visibilityTimeout`, until its dequeue count reaches `maxDequeueCount`, when the
  original message text is added to `<queue>-poison` and the message deleted;
- `messageEncoding` base64 decodes the text (a message that is not base64 fails
  delivery, as the host cannot bind it); `none` passes the text as is.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
from typing import Any

import azure.functions.queue as func_queue
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from optouts.azure.storage import queue_client
from optouts.domain.logtext import log_safe

from .app_loader import QueueFunction
from .host_config import QueueOptions
from .invoker import Invoker

_logger = logging.getLogger("devtools.localhost")

PROCESSING_LEASE_SECONDS = 600
FIRST_POLL_DELAY = 0.1


def resolve_queue_name(name: str) -> str:
    """`%SETTING%` binding expressions resolve from app settings, as in the host."""
    if name.startswith("%") and name.endswith("%") and len(name) > 2:
        value = os.environ.get(name[1:-1], "").strip()
        if not value:
            raise ValueError(f"queue name {name} refers to an app setting that is not set")
        return value
    return name


class QueueListener:
    def __init__(self, function: QueueFunction, options: QueueOptions, invoker: Invoker,
                 function_timeout: float | None) -> None:
        self.function = function
        self.options = options
        self.queue_name = resolve_queue_name(function.queue_name)
        self._invoker = invoker
        self._function_timeout = function_timeout
        self._queue = queue_client(self.queue_name, function.connection)
        self._poison = queue_client(f"{self.queue_name}-poison", function.connection)
        self._stopping = threading.Event()
        self._in_flight_count = 0
        self._count_lock = threading.Lock()
        self._slots = threading.Condition(self._count_lock)
        self._thread = threading.Thread(target=self._poll, name=f"queue-{self.queue_name}", daemon=True)

    def start(self) -> None:
        for client in (self._queue, self._poison):
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop fetching, then wait (bounded) for the messages in flight to finish."""
        self._stopping.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        with self._slots:
            while self._in_flight_count and time.monotonic() < deadline:
                self._slots.wait(0.1)

    def _poll(self) -> None:
        delay = FIRST_POLL_DELAY
        while not self._stopping.is_set():
            with self._slots:
                while self._in_flight_count > self.options.threshold and not self._stopping.is_set():
                    self._slots.wait(0.1)
                room = self.options.batch_size
            try:
                messages = list(self._queue.receive_messages(
                    messages_per_page=room, max_messages=room, visibility_timeout=PROCESSING_LEASE_SECONDS
                ))
            except Exception:  # storage hiccup: back off and try again, as the host does
                _logger.exception("receiving from %s failed", self.queue_name)
                messages = []
            if not messages:
                self._stopping.wait(delay)
                delay = min(delay * 2, max(self.options.max_polling_interval, FIRST_POLL_DELAY))
                continue
            delay = FIRST_POLL_DELAY
            for message in messages:
                with self._slots:
                    self._in_flight_count += 1
                threading.Thread(target=self._deliver, args=(message,), daemon=True,
                                 name=f"queue-{self.queue_name}-message").start()

    def _deliver(self, message: Any) -> None:
        try:
            self._run(message)
        except Exception:
            _logger.exception("settling message %s on %s failed", message.id, self.queue_name)
        finally:
            with self._slots:
                self._in_flight_count -= 1
                self._slots.notify_all()

    def _run(self, message: Any) -> None:
        try:
            body = self._decode(message.content)
            trigger = func_queue.QueueMessage(
                id=message.id,
                body=body,
                dequeue_count=message.dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            self._invoker.call(self.function.user_function, {self.function.argument: trigger}, self._function_timeout)
        except Exception as error:
            self._settle_failure(message, error)
            return
        self._queue.delete_message(message.id, message.pop_receipt)

    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the message is not valid base64 (host.json messageEncoding is base64)") from None

    def _settle_failure(self, message: Any, error: Exception) -> None:
        # One line, as the host's "Executed ... (Failed)": a failed delivery is how a function asks
        # for a redelivery, so it is routine. The traceback is at DEBUG (`--log-level DEBUG`).
        _logger.warning("function %s failed on message %s (delivery %d of %d): %s: %s", self.function.name,
                        message.id, message.dequeue_count, self.options.max_dequeue_count,
                        type(error).__name__, log_safe(str(error)))
        _logger.debug("function %s failure on message %s", self.function.name, message.id, exc_info=error)
        if message.dequeue_count >= self.options.max_dequeue_count:
            self._poison.send_message(message.content)
            try:
                self._queue.delete_message(message.id, message.pop_receipt)
            except ResourceNotFoundError:
                pass
            _logger.warning("message %s moved to %s-poison", message.id, self.queue_name)
            return
        self._queue.update_message(message.id, message.pop_receipt,
                                   visibility_timeout=int(self.options.visibility_timeout))
