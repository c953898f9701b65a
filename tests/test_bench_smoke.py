"""The benchmark code runs at tiny sizes so it cannot rot; no timing is asserted."""

from bench.__main__ import render, run, to_json


def test_benchmarks_run_and_render() -> None:
    results = run(smoke=True)
    report = render(results)
    for section in ("## 1. Overhead", "## 2. Bulk remove", "## 3. Cold start", "## 4. Queue throughput", "## 5. Memory"):
        assert section in report
    assert results["queue"]["completed"] == results["queue"]["messages"]
    assert '"overhead"' in to_json(results)
