"""The fan-out every provider needs: one operation over any number of recipients.

A provider's API takes a few recipients per call (ACS: 100; AWS: one). `FanOut` turns an
operation over thousands into calls: each distinct recipient is sent once, chunks go out
concurrently with a bounded concurrency, recipients answered with a transient failure are
re-tried in a few bounded rounds, everything stops at the operation's deadline, and the
answer is one result per distinct recipient in first-seen input order.

Light (standard library only): a provider supplies the one call (`ChunkSender`) and the
error to raise when no call got through; the fan-out knows nothing of HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from optouts.domain.operations import Operation
from optouts.providers.base import RecipientOutcome, RecipientResult


@dataclass(frozen=True, slots=True)
class ChunkAnswer:
    """What one call produced: per-recipient results, or a whole-call failure."""

    results: dict[str, RecipientResult]
    #: The call failed as a whole, transiently (throttled, 5xx, no answer): its recipients
    #: are not re-tried by a later round, since the provider's own retries were spent on it.
    transient_failure: bool = False
    retry_after: float | None = None
    status_code: int | None = None

    @classmethod
    def whole_call_failure(
        cls, chunk: Sequence[str], *, status_code: int | None, retry_after: float | None, message: str,
        error_code: str | None,
    ) -> ChunkAnswer:
        results = {
            to: RecipientResult(to=to, outcome=RecipientOutcome.FAILED, status_code=status_code,
                                error_message=message, error_code=error_code)
            for to in chunk
        }
        return cls(results=results, transient_failure=True, retry_after=retry_after, status_code=status_code)


class ChunkSender(Protocol):
    def __call__(self, operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        """One call for `chunk` (distinct recipients), answered by `deadline` (time.monotonic()).

        Returns per-recipient results, or a whole-call transient failure; raises a
        `ProviderError` for a failure that every other call would meet too (authentication,
        a malformed call), which stops the operation."""
        ...


#: Builds the error raised when every call of an operation failed transiently.
AllFailed = Callable[[Sequence[ChunkAnswer]], Exception]


class FanOut:
    """Runs operations for one provider. One instance lives as long as its provider: it owns
    the thread pool all operations share, and is safe to use from many threads at once."""

    def __init__(
        self,
        send: ChunkSender,
        *,
        chunk_size: int,
        max_concurrency: int,
        all_failed: AllFailed,
        retry_rounds: int = 2,
        retry_backoff: float = 0.2,
        pool_size: int | None = None,
        thread_name_prefix: str = "optouts-fanout",
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._send = send
        self._chunk_size = chunk_size
        self._max_concurrency = max_concurrency
        self._all_failed = all_failed
        self._retry_rounds = retry_rounds
        self._retry_backoff = retry_backoff
        # Shared by all operations; each operation separately caps its own in-flight chunks.
        self._executor = ThreadPoolExecutor(
            max_workers=pool_size or 4 * max_concurrency, thread_name_prefix=thread_name_prefix
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, deadline: float
    ) -> list[RecipientResult]:
        """One result per input recipient, in input order (a repeated recipient's result is
        repeated); raises what `all_failed` builds when no call was answered at all."""
        order: list[str] = []
        answers: dict[str, RecipientResult] = {}
        batch = _ChunkBatch(self, operation, sender, deadline, answers)

        chunk: list[str] = []
        full: list[str] | None = None
        seen: set[str] = set()
        # `recipients` may be a generator doing real work (number normalization):
        # consuming it while earlier chunks are in flight overlaps that work with I/O.
        for to in recipients:
            order.append(to)
            if to in seen:
                continue
            seen.add(to)
            if full is not None:
                batch.submit(full)
                full = None
            chunk.append(to)
            if len(chunk) == self._chunk_size:
                # Held back until another recipient shows up: the last chunk is sent
                # from this thread, which would otherwise sit idle waiting for it.
                full, chunk = chunk, []
        last = full or chunk
        if last:
            batch.submit(last, inline=True)
        batch.wait(raise_when_nothing_answered=True)

        self._retry_failed_recipients(batch, operation, sender, deadline, answers)
        return [answers[to] for to in order]

    def _retry_failed_recipients(
        self,
        first_pass: _ChunkBatch,
        operation: Operation,
        sender: str,
        deadline: float,
        answers: dict[str, RecipientResult],
    ) -> None:
        """Bounded re-try of the recipients answered with a per-recipient transient failure.

        Recipients of a call that failed as a whole are not re-tried here: the provider's
        retry policy already spent its attempts on that call.
        """
        gave_up = set(first_pass.whole_call_failures)
        for round_number in range(self._retry_rounds):
            retryable = [
                to for to, result in answers.items()
                if result.outcome is RecipientOutcome.FAILED and to not in gave_up
            ]
            if not retryable:
                return
            pause = self._retry_backoff * (2**round_number)
            if time.monotonic() + pause >= deadline:
                return
            time.sleep(pause)
            batch = _ChunkBatch(self, operation, sender, deadline, answers)
            for start in range(0, len(retryable), self._chunk_size):
                batch.submit(retryable[start : start + self._chunk_size])
            batch.wait(raise_when_nothing_answered=False)
            gave_up |= batch.whole_call_failures


class _ChunkBatch:
    """The chunks of one operation in flight, at most `max_concurrency` at a time."""

    def __init__(
        self,
        fanout: FanOut,
        operation: Operation,
        sender: str,
        deadline: float,
        answers: dict[str, RecipientResult],
    ) -> None:
        self._fanout = fanout
        self._operation = operation
        self._sender = sender
        self._deadline = deadline
        self._answers = answers
        # Made with the first pooled chunk: an operation of one chunk never needs them.
        self._slots: threading.BoundedSemaphore | None = None
        self._futures: list[tuple[Future[ChunkAnswer], list[str]]] = []
        self._sent_inline: list[ChunkAnswer | Exception] = []
        # Set from a pool thread; read without a lock because a stale read costs at most
        # one more chunk, which fails the same way.
        self._stopped = False
        self.whole_call_failures: set[str] = set()

    def submit(self, chunk: list[str], *, inline: bool = False) -> None:
        """Send `chunk` on the shared pool, or `inline` in the caller's thread (for the
        operation's last chunk, where a thread hand-off would only add latency)."""
        if self._slots is None and not inline:
            self._slots = threading.BoundedSemaphore(self._fanout._max_concurrency)
        if self._slots is not None:
            self._slots.acquire()
        if self._stopped:
            self._skip(chunk)
            return
        send = self._fanout._send
        if not inline:
            try:
                future = self._fanout._executor.submit(send, self._operation, self._sender, chunk, self._deadline)
            except RuntimeError:
                # The fan-out was closed (the host is stopping): the chunk is reported as not sent.
                self._stopped = True
                self._skip(chunk)
                return
            future.add_done_callback(self._pooled_chunk_done)
            self._futures.append((future, chunk))
            return
        try:
            self._sent_inline.append(send(self._operation, self._sender, chunk, self._deadline))
        except Exception as error:  # reported by wait(), like a pooled chunk's
            self._sent_inline.append(error)
        finally:
            self._release_slot()

    def _skip(self, chunk: list[str]) -> None:
        # After a chunk's failure wait() raises it; after close() the chunk is answered as not sent.
        self._release_slot()
        self._sent_inline.append(_not_sent(chunk))

    def _pooled_chunk_done(self, future: Future[ChunkAnswer]) -> None:
        try:
            # Cancelled: close() is stopping the pool. A failure: an authentication or bad-request
            # failure will hit every chunk alike. Either way no more chunks are sent.
            if future.cancelled() or future.exception() is not None:
                self._stopped = True
        finally:
            # Always: a slot kept by a cancelled chunk would block the operation's next submit forever.
            self._release_slot()

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def wait(self, *, raise_when_nothing_answered: bool) -> None:
        """Collect every chunk's answer; raise if the operation as a whole failed."""
        first_error: BaseException | None = None
        transient: list[ChunkAnswer] = []
        any_answered = False
        outcomes = [_not_sent(chunk) if future.cancelled() else future.exception() or future.result()
                    for future, chunk in self._futures] + self._sent_inline
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                first_error = first_error or outcome
                continue
            self._answers.update(outcome.results)
            if outcome.transient_failure:
                transient.append(outcome)
                self.whole_call_failures.update(outcome.results)
            else:
                any_answered = True
        if first_error is not None:
            raise first_error
        if raise_when_nothing_answered and transient and not any_answered:
            raise self._fanout._all_failed(transient)


def _not_sent(chunk: list[str]) -> ChunkAnswer:
    return ChunkAnswer.whole_call_failure(chunk, status_code=None, retry_after=None,
                                          message="not sent: the gateway is shutting down", error_code=None)
