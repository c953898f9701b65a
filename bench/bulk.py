"""Bulk remove of 10,000 distinct numbers (mixed E.164 and national formats) through the
HTTP function, at injected latency, and the CPU time it costs per number at zero latency;
run in a child process so its peak RSS is its own.

`python -m bench.bulk COUNT LATENCY_MS RUNS` prints one JSON object.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from optouts.providers.acs.client import OptOutsClient

from .client_overhead import InProcessGateway, RawPoster, normalize_all
from .measure import time_call
from .processes import emulator_process

SENDER = "+18005550100"


def mixed_numbers(count: int) -> list[str]:
    """Half E.164, half US national format, all distinct."""
    return [f"(206) {200 + n // 100:03d}-{n % 100:02d}00" if n % 2 else f"+1425{n:07d}" for n in range(count)]


def e164_numbers(count: int) -> list[str]:
    return [f"+1425{n:07d}" for n in range(count)]


def measure(count: int, latency_ms: float, runs: int, concurrency: int = 8) -> dict[str, object]:
    gateway_samples: list[float] = []
    naive: float
    with emulator_process(latency_ms) as connection_string:
        gateway = InProcessGateway(connection_string, "RemoveOptOuts")
        numbers = mixed_numbers(count)
        gateway.post(numbers[:100])  # warm connections and imports
        for _ in range(runs):
            started = time.perf_counter()
            gateway.post(numbers)
            gateway_samples.append(time.perf_counter() - started)
        client_samples: list[float] = []
        with OptOutsClient.from_connection_string(connection_string, max_concurrency=concurrency) as client:
            plain = e164_numbers(count)
            client.remove(SENDER, plain[:100])
            for _ in range(runs):
                started = time.perf_counter()
                client.remove(SENDER, plain)
                client_samples.append(time.perf_counter() - started)
        with OptOutsClient.from_connection_string(connection_string, max_concurrency=1) as sequential:
            started = time.perf_counter()
            sequential.remove(SENDER, e164_numbers(count))
            naive = time.perf_counter() - started
        raw = RawPoster(connection_string)
        try:
            started = time.perf_counter()
            plain = e164_numbers(count)
            for start in range(0, count, 100):
                raw.post(plain[start : start + 100])
            naive_raw = time.perf_counter() - started
        finally:
            raw.close()
        raw_concurrent_samples = [
            time_call(lambda: raw_concurrently(connection_string, e164_numbers(count), concurrency)) for _ in range(runs)
        ]
    normalization_samples = [time_call(lambda: normalize_all(numbers)) for _ in range(runs)]
    cpu_per_number = cpu_seconds_per_number(numbers, runs)
    ideal = math.ceil(math.ceil(count / 100) / concurrency) * latency_ms / 1000
    return {
        "count": count,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "samples": gateway_samples,
        "client_samples": client_samples,
        "normalization_samples": normalization_samples,
        "ideal": ideal,
        "raw_concurrent_samples": raw_concurrent_samples,
        "naive_one_chunk_at_a_time": naive,
        "naive_raw_http_client": naive_raw,
        "cpu_us_per_number": cpu_per_number * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cpu_seconds_per_number(numbers: list[str], runs: int) -> float:
    """The gateway's whole CPU cost per number (parse, normalize, chunk, sign, send, read,
    answer), at zero latency so that waiting costs nothing; the emulator's CPU is its own
    process's. The median over `runs`, of this process's CPU time (all its threads)."""
    samples = []
    with emulator_process(0.0) as connection_string:
        gateway = InProcessGateway(connection_string, "RemoveOptOuts")
        gateway.post(numbers[:100])
        for _ in range(runs):
            started = time.process_time()
            gateway.post(numbers)
            samples.append((time.process_time() - started) / len(numbers))
    samples.sort()
    return samples[len(samples) // 2]


def raw_concurrently(connection_string: str, numbers: list[str], concurrency: int) -> None:
    """The floor with this emulator: `concurrency` threads posting chunks of 100 with raw
    `http.client`, nothing else."""
    chunks = [numbers[start : start + 100] for start in range(0, len(numbers), 100)]
    posters = [RawPoster(connection_string) for _ in range(concurrency)]

    def lane(index: int) -> None:
        for chunk in chunks[index::concurrency]:
            posters[index].post(chunk)

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lane, range(concurrency)))
    finally:
        for poster in posters:
            poster.close()


if __name__ == "__main__":
    count, latency_ms, runs = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(measure(count, latency_ms, runs)))
