"""`python -m bench.aws_throughput [--smoke]`: the AWS provider's throughput against its quota.

AWS meters each action per second, so on AWS the gateway's speed is the quota, and the
budget is to use it well: at least 0.9x the configured requests per second, without a
single ThrottlingException from an emulator that enforces that quota, at a realistic
50 ms upstream latency. Runs against devtools/aws_emulator through real boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from devtools.aws_emulator import AwsEmulator
from optouts.providers.aws import AwsSettings
from optouts.providers.aws.provider import AwsProvider
from optouts.providers.base import Operation, RecipientOutcome

from .measure import summarize

BUDGET_VS_QUOTA = 0.9
LIST = "BenchList"
SENDER = "+18005550100"


def _provider(aws: AwsEmulator, rates: dict[str, float]) -> AwsProvider:
    env = {
        **aws.environ(),
        "OPTOUT_AWS_SENDERS": f"{SENDER}={LIST}",
        "OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER": str(rates["DeleteOptedOutNumber"]),
        "OPTOUT_AWS_RPS_DESCRIBE_OPTED_OUT_NUMBERS": str(rates["DescribeOptedOutNumbers"]),
    }
    settings = AwsSettings.from_environ(env)
    # The standard chain reads the emulator's key pair from the environment, as in real use.
    os.environ.update({k: v for k, v in aws.environ().items() if k.startswith("AWS_")})
    return AwsProvider.from_settings(settings, default_time_budget=600)


def throughput(*, removes: int, checks: int, runs: int, rates: dict[str, float], latency_ms: float) -> dict[str, Any]:
    results: dict[str, Any] = {"rates": rates, "latency_ms": latency_ms, "budget_vs_quota": BUDGET_VS_QUOTA}
    with AwsEmulator(rates=rates, latency_seconds=latency_ms / 1000) as aws:
        aws.store.create_list(LIST)
        provider = _provider(aws, rates)
        try:
            for name, operation, count, action in (
                ("remove", Operation.REMOVE, removes, "DeleteOptedOutNumber"),
                ("check", Operation.CHECK, checks, "DescribeOptedOutNumbers"),
            ):
                samples: list[float] = []
                for run in range(runs):
                    numbers = [f"+1425{run:03d}{i:04d}" for i in range(count)]
                    aws.store.seed(LIST, numbers)
                    # Start each run with the action's pacing idle, as after a quiet spell: the
                    # slot the previous run's last call took is not charged to this one.
                    time.sleep(1.0 / rates[action])
                    started = time.perf_counter()
                    answers = provider.run(operation, SENDER, numbers)
                    samples.append(time.perf_counter() - started)
                    assert all(a.outcome is RecipientOutcome.SUCCEEDED for a in answers)
                calls = count if operation is Operation.REMOVE else -(-count // 5)
                figure = summarize(f"{name} {count} numbers ({calls} {action} calls)", samples)
                # Sustained rate: n paced calls span n-1 intervals (plus one call's latency).
                achieved = max(calls - 1, 1) / figure.median
                results[name] = {"figure": figure, "calls": calls,
                                 "calls_per_second": achieved, "vs_quota": achieved / rates[action]}
            results["throttled"] = aws.throttled()
        finally:
            provider.close()
    return results


def render(results: dict[str, Any]) -> str:
    lines = [f"AWS provider against the emulator's quotas ({results['latency_ms']:g} ms latency):"]
    for name in ("remove", "check"):
        data = results[name]
        verdict = "meets" if data["vs_quota"] >= BUDGET_VS_QUOTA else "MISSES"
        lines.append(f"  {data['figure'].name}: median {data['figure'].median:.2f} s, "
                     f"{data['calls_per_second']:.2f} calls/s = {data['vs_quota']:.2f}x the quota "
                     f"({verdict} the {BUDGET_VS_QUOTA}x budget)")
    lines.append(f"  ThrottlingExceptions drawn: {results['throttled']}")
    return "\n".join(lines)


def for_bench(smoke: bool) -> dict[str, Any]:
    """What `python -m bench` runs: AWS's default quotas at 50 ms, or tiny fast ones for --smoke."""
    if smoke:
        return throughput(removes=20, checks=15, runs=1, latency_ms=5,
                          rates={"DeleteOptedOutNumber": 50.0, "DescribeOptedOutNumbers": 10.0})
    # AWS's default quotas: 10 per second for DeleteOptedOutNumber, 1 for DescribeOptedOutNumbers.
    return throughput(removes=100, checks=25, runs=3, latency_ms=50,
                      rates={"DeleteOptedOutNumber": 10.0, "DescribeOptedOutNumbers": 1.0})


def render_section(results: dict[str, Any]) -> list[str]:
    """The section of bench/RESULTS.md."""
    lines = ["", "## 7. AWS End User Messaging SMS against its quota", "",
             "AWS takes one call per number for add and remove and meters each action per second, so the budget "
             f"is the quota itself: at least {BUDGET_VS_QUOTA}x the configured rate, with no ThrottlingException "
             "from an emulator that enforces it (devtools/aws_emulator, real boto3).", "",
             "| what | runs | median s | calls/s | vs quota |", "| --- | --- | --- | --- | --- |"]
    for name in ("remove", "check"):
        data = results[name]
        figure = data["figure"]
        lines.append(f"| {figure.name} | {figure.runs} | {figure.median:.2f} | "
                     f"{data['calls_per_second']:.2f} | **{data['vs_quota']:.2f}x** "
                     f"({'within' if data['vs_quota'] >= BUDGET_VS_QUOTA else 'OVER'} budget) |")
    lines += ["", f"ThrottlingExceptions drawn: {results['throttled']}."]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aws_throughput", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, fast quotas")
    args = parser.parse_args(argv)
    results = for_bench(args.smoke)
    print(render(results))
    print(json.dumps(results, default=lambda figure: figure.as_dict()))


if __name__ == "__main__":
    main()
