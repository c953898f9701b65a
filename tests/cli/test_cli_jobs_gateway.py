"""The job commands against the gateway's real jobs API on the local host (Azurite, the ACS
emulator, the jobs queue worked by the host): the console script as an operator runs it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from devtools.localhost import LocalHost

from ..hardening.gateway import KEY
from .conftest import connection, run_script

JOB_NUMBERS = 2_500  # three work items of at most 1,000


def test_a_job_submitted_with_wait_ends_with_its_report(gateway: LocalHost, tmp_path: Path) -> None:
    numbers = [f"+1206{n:07d}" for n in range(JOB_NUMBERS)]
    source = tmp_path / "big.csv"
    source.write_text("id,msisdn\n" + "".join(f"{i},{number}\n" for i, number in enumerate(numbers)) + "x,hello\n",
                      encoding="utf-8")
    report = tmp_path / "report.csv"
    ran = run_script(["job", "submit", "--action", "remove", "--file", str(source), "--reason", "cli job",
                      "--wait", "--poll-interval", "0.2", "--wait-timeout", "90", "--output", str(report)],
                     env=connection(gateway))
    assert ran.exit_code == 1, ran.stderr  # completed, with one invalid row ("hello")
    job_id = ran.stdout.strip()
    assert len(job_id) == 32
    # The plain progress lines (standard error is a pipe): the job's states, then its end.
    progress = [line for line in ran.stderr.splitlines() if line.startswith(f"job {job_id[:12]}:")]
    assert progress[0].startswith(f"job {job_id[:12]}: queued ")
    assert progress[-1].startswith(f"job {job_id[:12]}: completed {JOB_NUMBERS + 1}/{JOB_NUMBERS + 1} (100%)")
    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert [row["input"] for row in rows] == [*numbers, "hello"]
    assert [row["status"] for row in rows] == ["succeeded"] * JOB_NUMBERS + ["invalid"]

    status = run_script(["job", "status", job_id, "--json"], env=connection(gateway))
    assert status.exit_code == 1  # a finished job's exit code: some rows not succeeded
    job = json.loads(status.stdout)
    assert job["state"] == "completed" and job["counts"]["succeeded"] == JOB_NUMBERS and job["counts"]["invalid"] == 1

    as_lines = run_script(["job", "report", job_id, "--json"], env=connection(gateway))
    assert as_lines.exit_code == 1
    assert [json.loads(line)["e164"] for line in as_lines.stdout.splitlines()][:2] == numbers[:2]

    finished = run_script(["job", "cancel", job_id], env=connection(gateway))
    assert finished.exit_code == 3 and "[JobFinished]" in finished.stderr
    assert KEY not in "".join(r.stdout + r.stderr for r in (ran, status, as_lines, finished))


def test_a_terminal_follows_a_job_with_a_live_bar(gateway: LocalHost) -> None:
    numbers = [f"+1206{n:07d}" for n in range(5_000, 5_000 + JOB_NUMBERS)]
    submitted = run_script(["job", "submit", "--action", "check", *numbers, "-q"], env=connection(gateway))
    assert submitted.exit_code == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    followed = run_script(["job", "status", job_id, "--wait", "--poll-interval", "0.2", "--wait-timeout", "90"],
                          env={**connection(gateway), "TTY_COMPATIBLE": "1", "COLUMNS": "120"})
    assert followed.exit_code == 0, followed.stderr
    assert "━" in followed.stderr and f"{JOB_NUMBERS}/{JOB_NUMBERS}" in followed.stderr
    assert "completed" in followed.stderr
    assert followed.stdout.startswith(f"job {job_id}: completed, {JOB_NUMBERS}/{JOB_NUMBERS} processed (succeeded ")


def test_an_unknown_job_is_exit_code_3(gateway: LocalHost) -> None:
    ran = run_script(["job", "status", "0" * 32], env=connection(gateway))
    assert ran.exit_code == 3 and "[JobNotFound]" in ran.stderr
