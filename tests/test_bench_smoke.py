"""The benchmark code runs at tiny sizes so it cannot rot; no timing is asserted."""

import os

import pytest

from bench.__main__ import from_json, render, run, to_json
from optouts import runtime


@pytest.fixture
def restored_environment():  # type: ignore[no-untyped-def]
    """The benchmarks configure the app through os.environ, as a standalone run would."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    runtime.reset()


def test_benchmarks_run_and_render(restored_environment: None) -> None:
    results = run(smoke=True)
    report = render(results)
    for section in ("## 1. One request", "## 2. Bulk remove", "## 3. Cold start", "## 4. Queue throughput",
                    "## 5. Memory and CPU"):
        assert section in report
    # The references each budgeted figure is read against are measured in the same run.
    assert "raw http.client, 100 recipients" in report
    assert "Raw http.client on 8 threads" in report
    assert "official JS SDK" in report and results["js_sdk_seconds"] > 0
    assert results["bulk"]["cpu_us_per_number"] > 0 and results["bulk"]["peak_rss_mb"] > 0
    assert results["queue"]["completed"] == results["queue"]["messages"]
    assert results["queue"]["audited_completed"] == results["queue"]["messages"]
    assert "## 6. Audit trail" in report
    audit = results["audit"]
    assert audit["indexed_numbers"] == audit["expected_numbers"] == 300  # every number's history was written
    queued = results["audit_queued"]
    assert queued["fully_audited"] == queued["messages"] == queued["completed"]
    assert "## 9. Jobs" in report
    for size in ("small", "large"):  # every number of each job is in its report
        assert results["jobs"][size]["state"] == "completed"
        assert results["jobs"][size]["report_rows"] == results["jobs"][size]["count"]
    assert results["jobs"]["rss_growth"] > 0
    assert "## 8. Change events" in report
    assert results["events"]["events_sent"] == results["events"]["events_expected"] == 60  # every change, once
    assert '"overhead"' in to_json(results)

    # `--only` re-runs one section and keeps the others' figures, read back from results.json.
    previous = from_json(to_json(results))
    assert previous["overhead"] == results["overhead"]  # Figures again, not dicts
    again = run(smoke=True, only=["cold_start"], previous=previous)
    assert again["overhead"] == results["overhead"] and again["bulk"] == previous["bulk"]
    assert again["measured"]["cold_start"]["date"] >= results["measured"]["cold_start"]["date"]
    assert render(again).count("## 3. Cold start") == 1
