"""An in-memory `Provider` for tests of the use cases that need no HTTP, in the manner of
httpx's `MockTransport`.

By default it keeps opt-out lists in memory (add, remove and check behave as a provider's
would); give it a `handler` to answer chunks yourself (per-recipient failures), or raise a
`ProviderError` from one to fail an operation as a whole. It runs on the shared fan-out, so
it dedupes, keeps input order, chunks and honours deadlines exactly as real providers do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from optouts.domain.operations import Operation
from optouts.providers.base import (
    ProviderThrottledError,
    ProviderUnavailableError,
    RecipientOutcome,
    RecipientResult,
)
from optouts.providers.fanout import ChunkAnswer, FanOut

#: Answers one call: the results for `chunk` keyed by recipient (missing ones count as failed),
#: or a whole `ChunkAnswer` (e.g. `ChunkAnswer.whole_call_failure(...)`); may raise a ProviderError.
Handler = Callable[[Operation, str, list[str]], Mapping[str, RecipientResult] | ChunkAnswer]


@dataclass(frozen=True, slots=True)
class Call:
    operation: Operation
    sender: str
    recipients: tuple[str, ...]


@dataclass
class InMemoryOptOuts:
    """Opt-out lists by sender, as a provider keeps them."""

    lists: dict[str, set[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answer(self, operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        with self._lock:
            opted_out = self.lists.setdefault(sender, set())
            if operation is Operation.ADD:
                opted_out.update(chunk)
            elif operation is Operation.REMOVE:
                opted_out.difference_update(chunk)
            checks = operation is Operation.CHECK
            return {
                to: RecipientResult(to, RecipientOutcome.SUCCEEDED, 200,
                                    is_opted_out=(to in opted_out) if checks else None)
                for to in chunk
            }


class FakeProvider:
    """A `Provider` whose calls are answered in memory; `calls` records what it was asked."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        name: str = "fake",
        chunk_size: int = 100,
        max_concurrency: int = 4,
        time_budget: float = 60.0,
    ) -> None:
        self.name = name
        self.store = InMemoryOptOuts()
        self.calls: list[Call] = []
        self.closed = False
        self._handler: Handler = handler or self.store.answer
        self._time_budget = time_budget
        self._calls_lock = threading.Lock()
        self._fanout = FanOut(self._send, chunk_size=chunk_size, max_concurrency=max_concurrency,
                              all_failed=_all_failed, retry_backoff=0.0, thread_name_prefix="optouts-fake")

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        deadline = time.monotonic() + (self._time_budget if time_budget is None else time_budget)
        return self._fanout.run(operation, sender, recipients, deadline=deadline)

    def close(self) -> None:
        self.closed = True
        self._fanout.close()

    def _send(self, operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        with self._calls_lock:
            self.calls.append(Call(operation, sender, tuple(chunk)))
        if time.monotonic() >= deadline:
            return ChunkAnswer.whole_call_failure(chunk, status_code=None, retry_after=None,
                                                  message="time budget exhausted before the call was sent",
                                                  error_code=None)
        answered = self._handler(operation, sender, chunk)
        if isinstance(answered, ChunkAnswer):
            return answered
        results = {
            to: answered.get(to) or RecipientResult(to, RecipientOutcome.FAILED, 502, "not answered")
            for to in chunk
        }
        return ChunkAnswer(results=results)


def _all_failed(failures: Sequence[ChunkAnswer]) -> ProviderThrottledError | ProviderUnavailableError:
    retry_afters = [f.retry_after for f in failures if f.retry_after is not None]
    retry_after = max(retry_afters) if retry_afters else None
    if all(f.status_code == 429 for f in failures):
        return ProviderThrottledError("the fake provider was throttled for every call", retry_after=retry_after)
    return ProviderUnavailableError("the fake provider was unavailable for every call", retry_after=retry_after)
