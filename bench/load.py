"""Load: concurrent callers against the gateway served by the local Functions host, with the
ACS emulator behind it; each in its own process, as the gateway, ACS and callers would be.

`python -m bench.load [callers] [requests] [latency_ms]` prints the figures;
`load()` returns them for bench/RESULTS.md and `render_load()` formats them.
Every loop is bounded: a fixed number of requests, a per-request timeout and an overall deadline.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devtools.azurite import free_port

from .processes import emulator_process

REPO = Path(__file__).resolve().parent.parent
SENDER = "+18005550100"
START_TIMEOUT_SECONDS = 90
REQUEST_TIMEOUT_SECONDS = 30
RUN_DEADLINE_SECONDS = 600


@contextmanager
def gateway_process(acs_connection_string: str, key: str) -> Iterator[int]:
    """`python -m devtools.localhost` (with its embedded Azurite) on a free port; yields the port."""
    port = free_port()
    env = {**os.environ, "ACS_CONNECTION_STRING": acs_connection_string, "OPTOUT_DEFAULT_SENDER": SENDER}
    env.pop("AzureWebJobsStorage", None)  # the host then runs Azurite itself
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.localhost", "--port", str(port), "--function-key", f"default={key}",
             "--settings-file", "no-such-settings-file.json"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            _wait_until_serving(port, key, process)
            yield port
        finally:
            process.send_signal(signal.SIGTERM)  # lets the host stop its Azurite
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_serving(port: int, key: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local host exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/health", headers={"x-functions-key": key})
            if connection.getresponse().status == 200:
                connection.close()
                return
            connection.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the local host did not start in time")


def request_for(index: int) -> tuple[str, str, bytes | None]:
    """A fixed mix: 70% bulk checks of 1-10 numbers, 20% single adds, 10% single GET checks."""
    number = f"+1425{5550000 + index % 10_000}"
    kind = index % 10
    if kind < 7:
        numbers = [f"+1425{5550000 + (index + k) % 10_000}" for k in range(1 + index % 10)]
        return "POST", "/api/optouts/check", json.dumps({"phoneNumbers": numbers}).encode()
    if kind < 9:
        return "POST", "/api/optouts/add", json.dumps({"phoneNumbers": [number]}).encode()
    return "GET", f"/api/optouts/{number}", None


class _Run:
    """Shared by the caller threads: the next request index, and what came back."""

    def __init__(self, total: int) -> None:
        self._indexes = itertools.count()
        self._lock = threading.Lock()
        self.total = total
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.deadline = time.monotonic() + RUN_DEADLINE_SECONDS

    def next_index(self) -> int | None:
        with self._lock:
            index = next(self._indexes)
        return index if index < self.total and time.monotonic() < self.deadline else None

    def record(self, latency: float, status: str) -> None:
        with self._lock:
            self.latencies.append(latency)
            self.statuses[status] += 1


def _caller(port: int, key: str, run: _Run) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    headers = {"x-functions-key": key, "content-type": "application/json"}
    try:
        while (index := run.next_index()) is not None:
            method, path, body = request_for(index)
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as error:
                status = type(error).__name__
                connection.close()  # a fresh connection for the next request
            run.record(time.perf_counter() - started, status)
    finally:
        connection.close()


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def load(callers: int = 32, requests: int = 2_000, latency_ms: float = 5.0) -> dict[str, Any]:
    """`requests` requests from `callers` concurrent callers; errors, latency percentiles, throughput."""
    key = secrets.token_urlsafe(16)
    with emulator_process(latency_ms=latency_ms) as acs, gateway_process(acs, key) as port:
        run = _Run(requests)
        threads = [threading.Thread(target=_caller, args=(port, key, run), name=f"load-{n}") for n in range(callers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=RUN_DEADLINE_SECONDS + REQUEST_TIMEOUT_SECONDS)
        elapsed = time.perf_counter() - started
    latencies = sorted(run.latencies)
    completed = len(latencies)
    errors = sum(count for status, count in run.statuses.items() if status != "200")
    return {
        "callers": callers,
        "requests": requests,
        "completed": completed,
        "errors": errors,
        "statuses": dict(run.statuses),
        "acs_latency_ms": latency_ms,
        "p50_ms": _percentile(latencies, 0.50) * 1e3 if latencies else None,
        "p99_ms": _percentile(latencies, 0.99) * 1e3 if latencies else None,
        "max_ms": latencies[-1] * 1e3 if latencies else None,
        "throughput_per_second": completed / elapsed if elapsed > 0 else None,
        "seconds": elapsed,
    }


def render_load(result: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    throughput = result["throughput_per_second"]
    return "\n".join([
        "## 6. Load",
        "",
        f"{result['callers']} concurrent callers, {result['requests']} requests (70% checks of 1-10 numbers, "
        f"20% single adds, 10% single GET checks) against the local host, ACS emulator at "
        f"{result['acs_latency_ms']:g} ms latency, each in its own process:",
        "",
        "| completed | errors | p50 ms | p99 ms | max ms | requests/s |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {result['completed']} | {result['errors']} | {ms(result['p50_ms'])} | {ms(result['p99_ms'])} | "
        f"{ms(result['max_ms'])} | {'n/a' if throughput is None else f'{throughput:.0f}'} |",
        "",
        f"Answers by status: {json.dumps(result['statuses'], sort_keys=True)}.",
    ])


if __name__ == "__main__":
    arguments = [float(value) for value in sys.argv[1:4]]
    figures = load(*(int(v) for v in arguments[:2]), *arguments[2:3])  # type: ignore[arg-type]
    print(render_load(figures))
    print(json.dumps(figures))
