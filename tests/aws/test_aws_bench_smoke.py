"""The AWS throughput benchmark runs at tiny sizes so it cannot rot; no timing is asserted."""

from __future__ import annotations

import os

import pytest

from bench import aws_throughput


def test_the_aws_benchmark_runs_and_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name in ("AWS_REGION", "AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2", "AWS_ENDPOINT_URL_STS",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "")  # restored after the test: the benchmark sets them as a standalone run would
    results = aws_throughput.throughput(removes=6, checks=6, runs=1, latency_ms=0,
                                        rates={"DeleteOptedOutNumber": 100.0, "DescribeOptedOutNumbers": 50.0})
    report = aws_throughput.render(results)
    assert "remove 6 numbers (6 DeleteOptedOutNumber calls)" in report
    assert "check 6 numbers (2 DescribeOptedOutNumbers calls)" in report
    assert results["remove"]["calls"] == 6 and results["throttled"] == 0
    section = "\n".join(aws_throughput.render_section(results))
    assert "## 7. AWS End User Messaging SMS against its quota" in section and "vs quota" in section
