"""`python -m bench [--smoke]`: run the benchmarks side by side and write the results.

--smoke runs every benchmark at tiny sizes and writes nothing: it is part of
`make test` so the benchmark code cannot rot. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import client_overhead
from .measure import machine

HERE = Path(__file__).resolve().parent


def run(smoke: bool) -> dict[str, object]:
    runs = 3 if smoke else 200
    overhead = client_overhead.overhead(runs)
    bulk = client_overhead.bulk(runs=1 if smoke else 5, count=300 if smoke else 10_000,
                                latency=0.005 if smoke else 0.05)
    return {"machine": machine(), "overhead": overhead, "bulk": bulk}


def render(results: dict[str, object]) -> str:
    facts = results["machine"]
    overhead = results["overhead"]
    bulk = results["bulk"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {facts['date']} on Python {facts['python']}, {facts['platform']}, {facts['cpus']} CPUs,",
        "against the ACS emulator on 127.0.0.1. Reproduce with `make bench`.",
        "",
        "## Client overhead (ms per call: min / median / max)",
        "",
        "| what | runs | ms |",
        "| --- | --- | --- |",
    ]
    for figure in overhead.values():
        lines.append(f"| {figure.name} | {figure.runs} | {figure.ms()} |")
    budgets = {1: 1.5, 100: 2.0}
    for size in (1, 100):
        raw = overhead[f"raw http.client, {size} recipients"].median
        client = overhead[f"OptOutsClient, {size} recipients"].median
        gateway = overhead[f"HTTP function in-process, {size} recipients"].median
        lines.append("")
        lines.append(f"{size} recipients, medians: client / raw **{client / raw:.2f}x**; "
                     f"gateway / raw **{gateway / raw:.2f}x** (budget ≤ {budgets[size]}x)")
    figure = bulk["figure"]
    lines += [
        "",
        "## Bulk remove",
        "",
        f"{figure.name}: {figure.ms()} ms (min / median / max of {figure.runs}).",
        f"Ideal ceil(chunks / concurrency) x latency = {bulk['ideal'] * 1e3:.0f} ms; "
        f"median / ideal = **{figure.median / bulk['ideal']:.2f}x**.",
        f"Naive one chunk at a time with raw http.client: {bulk['naive_sequential'] * 1e3:.0f} ms.",
        "",
    ]
    return "\n".join(lines)


def to_json(results: dict[str, object]) -> str:
    def encode(value: object) -> object:
        if hasattr(value, "as_dict"):
            return value.as_dict()  # type: ignore[no-any-return]
        raise TypeError(type(value).__name__)

    return json.dumps(results, default=encode, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, write nothing")
    args = parser.parse_args()
    results = run(args.smoke)
    report = render(results)
    print(report)
    if not args.smoke:
        (HERE / "RESULTS.md").write_text(report, encoding="utf-8")
        (HERE / "results.json").write_text(to_json(results) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
