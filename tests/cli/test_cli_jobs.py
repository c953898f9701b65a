"""The job commands against a scripted stand-in of the jobs API (docs/jobs.md's shapes, on
127.0.0.1): submit with --wait and its progress, status, cancel, report, and their exit codes.
The same commands against the gateway's real jobs API: test_cli_console_script.py."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..hardening.gateway import KEY
from .conftest import invoke

JOB_ID = "5f0c3c0e6d6b4a8e9a3f1f2b7c9d0e11"


@dataclass
class ScriptedJobs:
    """One job whose every status call moves it `step` rows on, ending as `final_state`."""

    total: int = 0
    step: int = 1
    final_state: str = "completed"
    processed: int = 0
    cancelled: bool = False
    uploads: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    report_calls: int = 0
    status_calls: int = 0

    def job(self) -> dict[str, Any]:
        done = self.processed >= self.total
        state = ("cancelled" if self.cancelled else self.final_state if done else
                 "running" if self.processed else "queued")
        failed = state == "failed"
        counts = {"succeeded": 0 if failed else self.processed, "invalid": 0, "failed": 0, "cancelled": 0}
        if state == "completed" and self.final_state == "completed" and self.total and "bad" in self.uploads[-1][2]:
            counts = {**counts, "succeeded": self.processed - 1, "invalid": 1}
        return {"id": JOB_ID, "action": "remove", "sender": "+18005550100", "state": state, "total": self.total,
                "processed": self.processed, "counts": counts,
                "percentDone": round(100 * self.processed / self.total, 1) if self.total else None,
                "ratePerSecond": 1850.0 if self.processed else None,
                "etaSeconds": None if done else 2.5, "reportReady": done and not failed,
                "error": {"code": "BlobNotFound", "message": "no such blob"} if failed else None}


@pytest.fixture
def jobs() -> Iterator[tuple[str, ScriptedJobs]]:
    script = ScriptedJobs()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:  # the test's own output stays readable
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, status: int, code: str) -> None:
            self._send(status, {"type": "about:blank", "title": "Conflict", "status": status, "detail": code.lower(),
                                "code": code, "traceId": "00-" + "a" * 32 + "-" + "b" * 16 + "-00"},
                       "application/problem+json")

        def _authorized(self) -> bool:
            if self.headers.get("x-functions-key") != KEY or "code=" in self.path:
                self.send_response(401)
                self.send_header("content-length", "0")
                self.end_headers()
                return False
            return True

        def do_POST(self) -> None:
            if not self._authorized():
                return
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            path, _, query = self.path.partition("?")
            params = dict(pair.split("=", 1) for pair in query.split("&") if pair)
            script.uploads.append((self.headers["content-type"], params, body))
            script.total = len(body.splitlines()) - 1
            self._send(202, script.job())

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == f"/api/jobs/{JOB_ID}":
                script.status_calls += 1
                script.processed = min(script.total, script.processed + script.step)
                self._send(200, script.job())
            elif self.path == f"/api/jobs/{JOB_ID}/report":
                script.report_calls += 1
                job = script.job()
                if job["state"] == "failed":
                    return self._problem(409, "NoReport")
                if not job["reportReady"]:
                    return self._problem(409, "ReportNotReady")
                numbers = script.uploads[-1][2].splitlines()[1:]
                lines = ["input,e164,status,code,message,optedOut"]
                lines += [f"{n},,invalid,InvalidPhoneNumber,not a number," if n == "bad" else f"{n},{n},succeeded,,,"
                          for n in numbers]
                self._send(200, "\n".join(lines) + "\n", "text/csv; charset=utf-8")
            else:
                self._problem(404, "JobNotFound")

        def do_DELETE(self) -> None:
            if not self._authorized():
                return
            if script.job()["state"] == "completed":
                return self._problem(409, "JobFinished")
            script.cancelled = True
            self._send(200, script.job())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def env_for(url: str) -> dict[str, str]:
    return {"OPTOUTS_URL": url, "OPTOUTS_KEY": KEY}


def test_submit_wait_shows_progress_and_writes_the_report(jobs: tuple[str, ScriptedJobs], tmp_path: Path) -> None:
    url, script = jobs
    script.step = 2
    source = tmp_path / "big.csv"
    source.write_text("msisdn;name\n+14255550100;a\n+14255550101;b\n+14255550102;c\n+14255550103;d\n+14255550104;e\n",
                      encoding="utf-8")
    report = tmp_path / "report.csv"
    ran = invoke(["job", "submit", "--action", "remove", "--file", str(source), "--reason", "carrier list",
                  "--wait", "--poll-interval", "0.1", "--output", str(report)], env=env_for(url))
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout == JOB_ID + "\n"
    content_type, params, body = script.uploads[0]
    assert content_type.startswith("text/csv")
    assert params == {"action": "remove", "reason": "carrier+list"}
    assert body.splitlines() == ["phoneNumber", *(f"+1425555010{n}" for n in range(5))]
    # Plain progress lines (standard error is not a terminal): each state, then the end.
    progress = [line for line in ran.stderr.splitlines() if line.startswith("job 5f0c3c0e6d6b:")]
    assert progress[0] == "job 5f0c3c0e6d6b: queued 0/5 (0%), eta 3s"
    assert progress[1] == "job 5f0c3c0e6d6b: running 2/5 (40%), 1,850/s, eta 3s"
    assert progress[-1] == "job 5f0c3c0e6d6b: completed 5/5 (100%), 1,850/s"
    saved = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert [(row["input"], row["status"]) for row in saved] == [(f"+1425555010{n}", "succeeded") for n in range(5)]


def test_a_completed_job_with_invalid_numbers_is_exit_code_1(jobs: tuple[str, ScriptedJobs]) -> None:
    url, script = jobs
    script.step = 10
    ran = invoke(["job", "submit", "--action", "remove", "+14255550100", "bad", "--wait", "--poll-interval", "0.1",
                  "--json"], env=env_for(url))
    assert ran.exit_code == 1
    job = json.loads(ran.stdout)
    assert job["state"] == "completed" and job["counts"]["invalid"] == 1
    report = invoke(["job", "report", JOB_ID, "--json"], env=env_for(url))
    assert report.exit_code == 1
    assert [json.loads(line)["status"] for line in report.stdout.splitlines()] == ["succeeded", "invalid"]


def test_status_report_and_cancel_of_an_unfinished_job(jobs: tuple[str, ScriptedJobs], tmp_path: Path) -> None:
    url, script = jobs
    assert invoke(["job", "submit", "--action", "remove", *(f"+1425555{n:04d}" for n in range(10))],
                  env=env_for(url)).exit_code == 0
    status = invoke(["job", "status", JOB_ID], env=env_for(url))
    assert status.exit_code == 0
    assert status.stdout.startswith(f"job {JOB_ID}: running, 1/10 processed (succeeded 1, ")
    early = invoke(["job", "report", JOB_ID, "--output", str(tmp_path / "report.csv")], env=env_for(url))
    assert early.exit_code == 5 and "has no report yet" in early.stderr
    assert list(tmp_path.iterdir()) == []  # no file started
    cancelled = invoke(["job", "cancel", JOB_ID, "--json"], env=env_for(url))
    assert cancelled.exit_code == 0 and json.loads(cancelled.stdout)["state"] == "cancelled"
    after = invoke(["job", "status", JOB_ID, "--wait", "--poll-interval", "0.1"], env=env_for(url))
    assert after.exit_code == 4


def test_wait_timeout_leaves_the_job_running_with_exit_code_5(jobs: tuple[str, ScriptedJobs]) -> None:
    url, script = jobs
    script.step = 0  # never moves
    ran = invoke(["job", "submit", "--action", "check", "+14255550100", "--wait", "--wait-timeout", "0.3",
                  "--poll-interval", "0.1"], env=env_for(url))
    assert ran.exit_code == 5
    assert "it goes on" in ran.stderr
    assert 1 <= script.status_calls <= 10


def test_a_failed_job_is_exit_code_4_and_has_no_report(jobs: tuple[str, ScriptedJobs], tmp_path: Path) -> None:
    url, script = jobs
    script.final_state = "failed"
    script.step = 5
    ran = invoke(["job", "submit", "--action", "add", "+14255550100", "--wait", "--poll-interval", "0.1",
                  "--output", str(tmp_path / "report.csv"), "-q"], env=env_for(url))
    assert ran.exit_code == 4 and ran.stderr == ""
    assert script.report_calls == 0 and list(tmp_path.iterdir()) == []
    report = invoke(["job", "report", JOB_ID], env=env_for(url))
    assert report.exit_code == 4 and "failed and has no report" in report.stderr


def test_cancelling_a_finished_job_and_an_unknown_job_are_exit_code_3(jobs: tuple[str, ScriptedJobs]) -> None:
    url, script = jobs
    script.step = 10
    assert invoke(["job", "submit", "--action", "add", "+14255550100", "--wait", "--poll-interval", "0.1"],
                  env=env_for(url)).exit_code == 0
    finished = invoke(["job", "cancel", JOB_ID], env=env_for(url))
    assert finished.exit_code == 3 and "[JobFinished]" in finished.stderr
    unknown = invoke(["job", "status", "0" * 32], env=env_for(url))
    assert unknown.exit_code == 3 and "[JobNotFound]" in unknown.stderr


def test_output_without_wait_is_a_usage_error(jobs: tuple[str, ScriptedJobs], tmp_path: Path) -> None:
    url, script = jobs
    ran = invoke(["job", "submit", "--action", "add", "+14255550100", "--output", str(tmp_path / "x.csv")],
                 env=env_for(url))
    assert ran.exit_code == 2 and script.uploads == []
