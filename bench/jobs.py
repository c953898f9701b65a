"""Jobs: a CSV list through POST /api/jobs until its report is ready, against the ideal, and
the worker's peak memory at two job sizes (it must not grow with the job).

Each size runs in a fresh interpreter (`python -m bench.jobs COUNT LATENCY_MS`) holding the local
host, so its peak RSS is the worker's own; Azurite and the ACS emulator are child processes.

The ideal is what the provider's latency alone allows at the gateway's parallelism: ACS calls of
100 numbers, `OPTOUT_MAX_CONCURRENCY` calls per work item, host.json's `batchSize` work items at
once on the one instance: ceil(count / 100 / (concurrency x batch)) round trips.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .processes import emulator_process

HERE = Path(__file__).resolve().parent
KEY = "bench-jobs"
WAIT_SECONDS = 900
CHUNK = 100
CONCURRENCY = 8
BATCH = 16
#: Peak RSS at the larger size over the smaller, at most: memory that does not grow with the job.
BUDGET_RSS_GROWTH = 1.25


def run_job(count: int, latency_ms: float) -> dict[str, Any]:
    import requests

    from devtools.azurite import Azurite
    from devtools.localhost import LocalHost
    from optouts import runtime

    body = ("phone\r\n" + "".join(f"+1206{n:07d}\r\n" for n in range(count))).encode()
    with Azurite() as azurite, emulator_process(latency_ms) as acs:
        settings = {"AzureWebJobsStorage": azurite.connection_string, "ACS_CONNECTION_STRING": acs,
                    "OPTOUT_DEFAULT_SENDER": "+18005550100", "OPTOUT_JOB_MAX_ROWS": str(max(count, 1000)),
                    "OPTOUT_MAX_CONCURRENCY": str(CONCURRENCY),
                    "AzureFunctionsJobHost__extensions__queues__batchSize": str(BATCH),
                    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100"}
        runtime.reset()
        with LocalHost(settings=settings, function_keys={"default": KEY}) as host, requests.Session() as http:
            http.headers["x-functions-key"] = KEY
            base = f"{host.base_url}/api/jobs"
            started = time.perf_counter()
            answer = http.post(base, params={"action": "remove"}, data=body, headers={"content-type": "text/csv"},
                               timeout=300)
            accepted = time.perf_counter() - started
            answer.raise_for_status()
            job_id = answer.json()["id"]
            job: dict[str, Any] = {}
            deadline = started + WAIT_SECONDS
            while time.perf_counter() < deadline:
                job = http.get(f"{base}/{job_id}", timeout=60).json()
                if job["reportReady"] or job["state"] == "failed":
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
            # Before the report is downloaded: the streamed answer is buffered whole (the Python
            # worker's HTTP model), which is the download's cost, not the processing's.
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            report = http.get(f"{base}/{job_id}/report", timeout=300)
            rows = report.content.count(b"\n") - 1
        runtime.reset()
    ideal = math.ceil(count / CHUNK / (CONCURRENCY * BATCH)) * latency_ms / 1000
    return {"count": count, "latency_ms": latency_ms, "state": job.get("state"), "report_rows": rows,
            "seconds": elapsed, "accept_seconds": accepted, "numbers_per_second": count / elapsed,
            "ideal_seconds": ideal, "vs_ideal": elapsed / ideal if ideal else None,
            "peak_rss_mb": peak_kb / 1024}


def _in_child(count: int, latency_ms: float) -> dict[str, Any]:
    output = subprocess.run([sys.executable, "-m", "bench.jobs", str(count), str(latency_ms)], check=True,
                            capture_output=True, text=True, cwd=HERE.parent, timeout=WAIT_SECONDS + 120).stdout
    data: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return data


def for_bench(smoke: bool) -> dict[str, Any]:
    """The 200,000-number job at 50 ms, and a quarter of it for the memory comparison."""
    small, large, latency = (500, 2_000, 5.0) if smoke else (50_000, 200_000, 50.0)
    runs = {"small": _in_child(small, latency), "large": _in_child(large, latency)}
    runs["rss_growth"] = runs["large"]["peak_rss_mb"] / runs["small"]["peak_rss_mb"]
    return runs


def render_section(results: dict[str, Any]) -> list[str]:
    lines = ["", "## 9. Jobs (POST /api/jobs until the report is ready)", "",
             f"One local host, host.json batchSize {BATCH}, {CONCURRENCY} ACS calls of {CHUNK} per work item; the "
             "ideal is the provider's latency alone at that parallelism. Peak RSS is the worker process's.", "",
             "| numbers | latency ms | state | report rows | s | numbers/s | ideal s | vs ideal | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("small", "large"):
        run = results[name]
        vs = f"{run['vs_ideal']:.1f}x" if run["vs_ideal"] else "-"
        lines.append(f"| {run['count']} | {run['latency_ms']:g} | {run['state']} | {run['report_rows']} | "
                     f"{run['seconds']:.2f} | {run['numbers_per_second']:.0f} | {run['ideal_seconds']:.2f} | {vs} | "
                     f"{run['peak_rss_mb']:.0f} |")
    growth = results["rss_growth"]
    verdict = "within" if growth <= BUDGET_RSS_GROWTH else "OVER"
    lines += ["", f"Peak RSS at {results['large']['count']} numbers over {results['small']['count']}: "
                  f"**{growth:.2f}x** ({verdict} budget, ≤ {BUDGET_RSS_GROWTH:g}x for 4x the numbers)."]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    count, latency_ms = int(args[0]), float(args[1])
    print(json.dumps(run_job(count, latency_ms)), flush=True)


if __name__ == "__main__":
    main()
