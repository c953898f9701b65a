"""The benchmark code runs at tiny sizes so it cannot rot; no timing is asserted."""

from bench.__main__ import render, run, to_json


def test_benchmarks_run_and_render() -> None:
    results = run(smoke=True)
    report = render(results)
    assert "100 recipients, medians: client / raw" in report
    assert "Naive one chunk at a time" in report
    assert '"overhead"' in to_json(results)
