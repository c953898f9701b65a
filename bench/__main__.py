"""`python -m bench [--smoke]`: run the benchmarks side by side and write the results.

Every figure is min/median/max over repeated runs, on loopback, against the ACS
emulator (and Azurite for the queue), and is printed against its budget.
--smoke runs everything at tiny sizes and writes nothing: it is part of `make test` so
the benchmark code cannot rot. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import audit_trail, aws_throughput, client_overhead, cold_start, events, jobs, js_sdk, load, queue_throughput
from .measure import Figure, machine, summarize

HERE = Path(__file__).resolve().parent
#: ACS's real round trip is of this order; budgets are measured where users feel them.
LATENCY_MS = 50.0
BUDGETS = {
    "overhead_1": 1.10,
    "overhead_100": 1.10,
    "bulk_vs_ideal": 1.25,
    "sdk_vs_gateway": 5.0,
    "cold_start_vs_bare_import": 1.5,
    "queue_vs_azurite": 0.5,
    "bulk_peak_rss_mb": 150.0,
}


def sections(smoke: bool) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each section's run, by name; a section sets the results.json keys it returns. Figures compared with each
    other (a ratio) are always measured within one section, side by side."""
    latency_ms = 5.0 if smoke else LATENCY_MS
    count = 300 if smoke else 10_000

    def bulk() -> dict[str, Any]:
        # The JS SDK's ratio is to the gateway's bulk figure: both in one section.
        return {"bulk": _bulk_in_child(count=count, latency_ms=latency_ms, runs=1 if smoke else 5),
                "js_sdk_seconds": js_sdk.sequential_remove(count=count, latency_ms=latency_ms)}

    return {
        "overhead": lambda: {"overhead": client_overhead.overhead(runs=3 if smoke else 60, latency_ms=latency_ms)},
        "bulk": bulk,
        "cold_start": lambda: {"cold_start": cold_start.cold_start(runs=1 if smoke else 10)},
        "queue": lambda: {"queue": queue_throughput.queue_throughput(count=20 if smoke else 1_000)},
        "load": lambda: {"load": load.load(callers=4, requests=40) if smoke else load.load()},
        "audit": lambda: {"audit": audit_trail.audit_trail(smoke)},
        "audit_queued": lambda: {"audit_queued": audit_trail.audit_queued(smoke)},
        "aws": lambda: {"aws": aws_throughput.for_bench(smoke)},
        "events": lambda: {"events": events.events_throughput(smoke)},
        "jobs": lambda: {"jobs": jobs.for_bench(smoke)},
    }


def run(smoke: bool, only: Sequence[str] = (), previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every section, or only those named, keeping the other sections' figures from `previous`."""
    results: dict[str, Any] = dict(previous or {})
    results.update({"smoke": smoke, "latency_ms": 5.0 if smoke else LATENCY_MS})
    measured: dict[str, Any] = dict(results.get("measured", {}))
    started = machine()["date"]
    for name, section in sections(smoke).items():
        if only and name not in only:
            continue
        results.update(section())
        measured[name] = {**machine(), "run": started}
    results["measured"] = measured
    results["machine"] = machine()
    return results


def _bulk_in_child(count: int, latency_ms: float, runs: int) -> dict[str, Any]:
    """In a fresh interpreter, so the peak RSS is the bulk run's own."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.bulk", str(count), str(latency_ms), str(runs)],
        check=True, capture_output=True, text=True, cwd=HERE.parent,
    ).stdout
    data = json.loads(output.strip().splitlines()[-1])
    data["figure"] = summarize(f"remove {count} numbers via the HTTP function, {latency_ms:g} ms latency",
                               data.pop("samples"))
    data["client_figure"] = summarize(f"remove {count} E.164 numbers with the client alone", data.pop("client_samples"))
    data["normalization_figure"] = summarize(f"normalize the {count} numbers alone", data.pop("normalization_samples"))
    data["raw_concurrent_figure"] = summarize(f"raw http.client, {count} numbers", data.pop("raw_concurrent_samples"))
    return data


def _verdict(value: float, budget: float, *, at_most: bool = True) -> str:
    ok = value <= budget if at_most else value >= budget
    return f"{'within' if ok else 'OVER'} budget ({'≤' if at_most else '≥'} {budget:g})"


def render(results: dict[str, Any]) -> str:
    facts = results["machine"]
    latency = results["latency_ms"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured on Python {facts['python']}, {facts['platform']}, {facts['cpus']} CPUs, "
        f"Azurite {_azurite(results)}; "
        f"{_when(results.get('measured', {}), facts)}",
        "Everything on 127.0.0.1; the ACS emulator and Azurite run as separate processes. Reproduce with `make bench`.",
        "Figures are min / median / max; ratios compare medians measured side by side in this run.",
        f"The ACS emulator answers {latency:g} ms late, the order of ACS's real round trip: budgets are measured "
        "where users feel them. The gateway talks to ACS through azure-core's standard RequestsTransport.",
        "Sections 1, 2 and the budgeted queue figure run with `OPTOUT_AUDIT_WRITES=false`: the audit trail's "
        "Table Storage writes are extra round trips of the product's own, reported apart in section 4.",
        "",
        f"## 1. One request ({latency:g} ms upstream latency)",
        "",
        "| what | runs | ms |",
        "| --- | --- | --- |",
    ]
    overhead: dict[str, Figure] = results["overhead"]
    lines += [f"| {f.name} | {f.runs} | {f.ms()} |" for f in overhead.values()]
    lines.append("")
    for size in (1, 100):
        raw = overhead[f"raw http.client, {size} recipients"].median
        client = overhead[f"OptOutsClient, {size} recipients"].median
        gateway = overhead[f"HTTP function in-process, {size} recipients"].median
        ratio = gateway / raw
        lines.append(f"- {size} number(s): gateway / raw signed http.client POST = **{ratio:.3f}x**, "
                     f"{_verdict(ratio, BUDGETS[f'overhead_{size}'])}, {(gateway - raw) * 1e3:.2f} ms more per "
                     f"request; the client alone / raw = {client / raw:.3f}x.")
    bulk = results["bulk"]
    figure: Figure = bulk["figure"]
    ratio = figure.median / bulk["ideal"]
    sdk = results["js_sdk_seconds"]
    lines += [
        "",
        "## 2. Bulk remove",
        "",
        f"{figure.name}, concurrency {bulk['concurrency']}: {figure.ms()} ms over {figure.runs} runs.",
        f"- Ideal ceil(chunks / concurrency) × latency = {bulk['ideal'] * 1e3:.0f} ms; median / ideal = **{ratio:.2f}x**, "
        f"{_verdict(ratio, BUDGETS['bulk_vs_ideal'])}.",
        f"- Without the gateway: the official JS SDK (`@azure/communication-sms` 1.2.0-beta.4) calling "
        f"`optOuts.remove` on each chunk of 100, one after the other, over TLS to the same emulator: "
        f"{sdk * 1e3:.0f} ms; SDK / gateway = **{sdk / figure.median:.1f}x** "
        f"({_verdict(sdk / figure.median, BUDGETS['sdk_vs_gateway'], at_most=False)}).",
        f"- The client alone, same numbers in E.164: {bulk['client_figure'].ms()} ms; "
        f"median / ideal = {bulk['client_figure'].median / bulk['ideal']:.2f}x.",
        f"- Raw http.client on {bulk['concurrency']} threads, same chunks, nothing else: "
        f"{bulk['raw_concurrent_figure'].ms()} ms; median / ideal = "
        f"{bulk['raw_concurrent_figure'].median / bulk['ideal']:.2f}x: what the emulator itself adds to the ideal.",
        f"- Normalizing the same numbers alone, no I/O: {bulk['normalization_figure'].ms()} ms, "
        f"{bulk['normalization_figure'].median / bulk['ideal']:.2f} of the ideal time, spent while earlier chunks "
        "are in flight.",
        f"- One chunk at a time: {bulk['naive_one_chunk_at_a_time'] * 1e3:.0f} ms with the client, "
        f"{bulk['naive_raw_http_client'] * 1e3:.0f} ms with raw http.client.",
        "",
        "## 5. Memory and CPU",
        "",
        f"- Peak RSS of the bulk run's process ({bulk['count']} numbers): **{bulk['peak_rss_mb']:.0f} MB**, "
        f"{_verdict(bulk['peak_rss_mb'], BUDGETS['bulk_peak_rss_mb'])}.",
        f"- CPU time per number through the whole gateway (HTTP function in, ACS calls, answer out) at 0 ms "
        f"latency: **{bulk['cpu_us_per_number']:.1f} µs** (median of the runs; the emulator's CPU is its own "
        "process's).",
    ]

    cold: dict[str, Figure] = results["cold_start"]
    bare = cold["import azure.functions"].median
    app = cold["import function_app"].median
    lines += ["", "## 3. Cold start (ms, fresh interpreter each run)", "", "| what | runs | ms |", "| --- | --- | --- |"]
    lines += [f"| {f.name} | {f.runs} | {f.ms()} |" for f in cold.values()]
    lines += ["", f"- import function_app / import azure.functions = **{app / bare:.2f}x**, "
              f"{_verdict(app / bare, BUDGETS['cold_start_vs_bare_import'])}."]

    queue = results["queue"]
    ratio = queue["gateway_per_second"] / queue["azurite_per_second"]
    lines += [
        "",
        "## 4. Queue throughput",
        "",
        f"{queue['messages']} messages × 10 numbers through Azurite and the local host: "
        f"{queue['gateway_per_second']:.0f} messages/s ({queue['completed']} completed); Azurite's own receive+delete: "
        f"{queue['azurite_per_second']:.0f} messages/s.",
        f"- ratio **{ratio:.2f}x**, {_verdict(ratio, BUDGETS['queue_vs_azurite'], at_most=False)}. "
        "The audit trail was off (`OPTOUT_AUDIT_WRITES=false`), as in sections 1 and 2.",
        f"- With the audit trail on (per message: intent and outcome blobs and two index messages before the result; "
        f"the indexer function in the same host writes the 10 history entities afterwards, to the same Azurite): "
        f"{queue['audited_gateway_per_second']:.0f} messages/s ({queue['audited_completed']} completed), "
        f"{queue['audited_gateway_per_second'] / queue['azurite_per_second']:.2f}x of Azurite's receive+delete. "
        f"Azurite's Table service took {queue['azurite_table_inserts_per_second']:.0f} inserts/s from 8 writers "
        f"alone, a ceiling of {queue['azurite_table_inserts_per_second'] / 10:.0f} messages/s for 10 records each: "
        f"the audited path ran at {queue['audited_gateway_per_second'] * 10 / queue['azurite_table_inserts_per_second']:.2f}x "
        "of it.",
    ]
    if "load" in results:
        lines += ["", load.render_load(results["load"])]
    if "audit" in results and "audit_queued" in results:
        lines += audit_trail.render(results["audit"], results["audit_queued"])
    if "aws" in results:
        lines += aws_throughput.render_section(results["aws"])
    if "events" in results:
        lines += events.render(results["events"])
    if "jobs" in results:
        lines += jobs.render_section(results["jobs"])
    lines.append("")
    return "\n".join(lines)


def _azurite(results: dict[str, Any]) -> str:
    by_version: dict[str, list[str]] = {}
    for name, facts in results.get("measured", {}).items():
        by_version.setdefault(str(facts.get("azurite", "unknown")), []).append(name)
    if len(by_version) <= 1:
        return next(iter(by_version), str(results["machine"].get("azurite", "unknown")))
    return ", ".join(f"{version} ({', '.join(names)})" for version, names in by_version.items())


def _when(measured: dict[str, Any], facts: dict[str, Any]) -> str:
    runs: dict[str, list[str]] = {}
    for name, section in measured.items():
        runs.setdefault(str(section.get("run", section["date"])), []).append(name)
    if len(runs) <= 1:
        return f"measured {facts['date']} in one run."
    return ("sections measured in separate runs (`--only`), each side by side within itself: "
            + "; ".join(f"{', '.join(names)} from {run}" for run, names in sorted(runs.items())) + ".")


def from_json(text: str) -> dict[str, Any]:
    """results.json back into results, its figures as Figure again."""
    def decode(value: dict[str, Any]) -> Any:
        return Figure(**value) if set(value) == FIGURE_FIELDS else value

    return json.loads(text, object_hook=decode)  # type: ignore[no-any-return]


FIGURE_FIELDS = {"name", "runs", "min", "median", "max"}


def to_json(results: dict[str, Any]) -> str:
    def encode(value: object) -> object:
        if isinstance(value, Figure):
            return value.as_dict()
        raise TypeError(type(value).__name__)

    return json.dumps(results, default=encode, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, write nothing")
    parser.add_argument("--record", action="store_true",
                        help="write the committed bench/RESULTS.md and bench/results.json (`make bench RECORD=1`); "
                             "otherwise the results go to the untracked bench/out/")
    parser.add_argument("--only", default="", metavar="SECTION[,SECTION]",
                        help=f"run only these sections ({', '.join(sections(False))}) and keep the others' "
                             "figures from the results.json being rewritten")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(sections(args.smoke)))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    target = HERE if args.record else HERE / "out"
    previous = None
    if only and (target / "results.json").exists():
        previous = from_json((target / "results.json").read_text(encoding="utf-8"))
    elif only and not args.smoke:
        parser.error(f"--only keeps the other sections from {target / 'results.json'}, which does not exist yet")
    results = run(args.smoke, only, previous)
    report = render(results)
    print(report)
    if not args.smoke:
        target.mkdir(exist_ok=True)
        (target / "RESULTS.md").write_text(report, encoding="utf-8")
        (target / "results.json").write_text(to_json(results) + "\n", encoding="utf-8")
        print(f"\nwritten to {target.relative_to(HERE.parent)}/RESULTS.md and results.json", flush=True)


if __name__ == "__main__":
    main()
