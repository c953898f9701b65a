"""Calls user functions the way the Python worker does: sync functions on a bounded
thread pool, `async def` functions on one event loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Invoker:
    def __init__(self, max_threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="localhost-fn")
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="localhost-loop", daemon=True)
        self._loop_thread.start()

    def call(self, function: Any, kwargs: dict[str, Any], timeout: float | None) -> Any:
        if inspect.iscoroutinefunction(function):
            return asyncio.run_coroutine_threadsafe(function(**kwargs), self._loop).result(timeout)
        return self._pool.submit(function, **kwargs).result(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=10)
        self._loop.close()
