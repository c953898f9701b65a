"""The `optouts` command: check, add and remove numbers, read a number's history, run bulk jobs.

Every command is one or more calls to the gateway's HTTP API (README, "API"; docs/jobs.md);
docs/cli.md is the operator's guide and says what each exit code means.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from optouts_cli.exitcodes import ExitCode
from optouts_cli.gateway import DEFAULT_TIMEOUT_SECONDS, Gateway, GatewayError, UsageError
from optouts_cli.numbers import InputError, gather
from optouts_cli.output import (
    HISTORY_COLUMNS,
    RESULT_COLUMNS,
    ProgressView,
    destination,
    note,
    print_table,
    result_row,
    stderr_console,
    summary_line,
    wants_table,
    write_csv,
    write_json,
)
from optouts_cli.text import printable

#: Numbers per HTTP call by default: well under the gateway's OPTOUT_MAX_NUMBERS default (10,000)
#: and its one-minute time budget, and a progress step an operator can follow.
DEFAULT_BATCH_SIZE = 1_000
#: The gateway's default OPTOUT_MAX_NUMBERS: no call may carry more.
MAX_BATCH_SIZE = 10_000
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
#: The shells' status for a command stopped by Ctrl+C (128 + SIGINT).
INTERRUPTED = 130

app = typer.Typer(name="optouts", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Manage SMS opt-out lists through the opt-out gateway's HTTP API.")
job_app = typer.Typer(no_args_is_help=True, help="Bulk jobs: submit a file, follow its progress, fetch its report.")
app.add_typer(job_app, name="job")


class Action(str, Enum):
    add = "add"
    remove = "remove"
    check = "check"


# -- options shared by the commands ------------------------------------------------------------------

UrlOption = Annotated[str, typer.Option("--url", envvar="OPTOUTS_URL", show_envvar=True, show_default=False,
                                        help="The gateway, such as https://<app>.azurewebsites.net.")]
# The key: from the environment preferably (a command line is visible to other users of the machine);
# show_default=False so that help never shows a value.
KeyOption = Annotated[str, typer.Option("--key", envvar="OPTOUTS_KEY", show_envvar=True, show_default=False,
                                        help="The function key (prefer the OPTOUTS_KEY variable).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine output: JSON on standard output.")]
OutputOption = Annotated[str | None, typer.Option("--output", "-o", help="Write results to this file "
                                                  "(CSV, or JSON with --json) instead of standard output.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on standard error.")]
HttpTimeoutOption = Annotated[float, typer.Option("--http-timeout", min=1.0, help="Seconds one HTTP call may take.")]
SenderOption = Annotated[str | None, typer.Option("--sender", help="Whose opt-out list (default: the gateway's "
                                                  "OPTOUT_DEFAULT_SENDER).")]
RegionOption = Annotated[str | None, typer.Option("--region", help="Region for numbers written without +, "
                                                  "such as US (default: the gateway's).")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, kept in the audit trail.")]
FileOption = Annotated[str | None, typer.Option("--file", "-f", help="CSV (a phone/number/msisdn column, else the "
                                                "first) or one number per line; - reads standard input.")]
NumbersArgument = Annotated[list[str] | None, typer.Argument(metavar="NUMBER...", help="Phone numbers.",
                                                            show_default=False)]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE,
                                          help="Numbers per HTTP call; more numbers are sent in several calls.")]
WaitTimeoutOption = Annotated[float, typer.Option("--wait-timeout", min=0.0,
                                                  help="With --wait: give up waiting after this many seconds "
                                                       "(0: wait until the job ends). The job goes on.")]
PollOption = Annotated[float, typer.Option("--poll-interval", min=0.1, help="Seconds between status calls.")]


def main() -> None:
    """The console script's entry point."""
    app()


def _fail(console: Console, code: ExitCode, message: str) -> NoReturn:
    note(console, f"error: {message}", style="red")
    raise typer.Exit(int(code))


def _gateway(url: str, key: str, http_timeout: float, console: Console) -> Gateway:
    try:
        return Gateway(url, key, timeout=http_timeout)
    except UsageError as error:
        _fail(console, ExitCode.USAGE, str(error))


def _gateway_failure(console: Console, error: GatewayError) -> NoReturn:
    trace = f" (traceId {error.trace_id})" if error.trace_id else ""
    _fail(console, ExitCode.GATEWAY, f"{error}{trace}")


# -- check, add, remove ------------------------------------------------------------------------------

def _bulk_command(action: Action) -> Callable[..., None]:
    def command(
        numbers: NumbersArgument = None,
        file: FileOption = None,
        sender: SenderOption = None,
        region: RegionOption = None,
        reason: ReasonOption = None,
        batch_size: BatchOption = DEFAULT_BATCH_SIZE,
        url: UrlOption = "",
        key: KeyOption = "",
        as_json: JsonOption = False,
        output: OutputOption = None,
        quiet: QuietOption = False,
        http_timeout: HttpTimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        console = stderr_console()
        _require_connection(console, url, key)
        try:
            phone_numbers = gather(numbers or [], file)
        except InputError as error:
            _fail(console, ExitCode.USAGE, str(error))
        with _gateway(url, key, http_timeout, console) as gateway:
            report, failure = _send_in_batches(gateway, action, phone_numbers, batch_size, sender=sender,
                                               region=region, reason=reason, console=console, quiet=quiet)
        _write_results(report, as_json=as_json, output=output)
        if not quiet:
            note(console, f"{action.value}: {summary_line(report['summary'])}")
        if failure is not None:
            _gateway_failure(console, failure)
        if report["summary"]["total"] != report["summary"]["succeeded"]:
            raise typer.Exit(int(ExitCode.NUMBERS_NOT_SUCCEEDED))

    command.__doc__ = {
        Action.check: "Tell, per number, whether it is on the opt-out list.",
        Action.add: "Add numbers to the opt-out list (they receive no more SMS from the sender).",
        Action.remove: "Remove numbers from the opt-out list (they can receive SMS again).",
    }[action]
    return command


for _action in (Action.check, Action.add, Action.remove):
    app.command(_action.value)(_bulk_command(_action))


def _require_connection(console: Console, url: str, key: str) -> None:
    if not url.strip():
        _fail(console, ExitCode.USAGE, "no gateway URL: give --url or set OPTOUTS_URL")
    if not key.strip():
        _fail(console, ExitCode.USAGE, "no function key: give --key or set OPTOUTS_KEY")


def _send_in_batches(gateway: Gateway, action: Action, numbers: list[str], batch_size: int, *,
                     sender: str | None, region: str | None, reason: str | None, console: Console,
                     quiet: bool) -> tuple[dict[str, Any], GatewayError | None]:
    """One call per batch, in input order. A refused call stops the run: the numbers not sent
    are reported `notSent`, so the output always accounts for every input number."""
    batches = [numbers[i:i + batch_size] for i in range(0, len(numbers), batch_size)]
    results: list[dict[str, Any]] = []
    operations: list[Any] = []
    answered_sender: str | None = sender
    failure: GatewayError | None = None
    # A plain line per call (each takes a while): plain_interval 0.
    with ProgressView(console, action.value, enabled=not quiet and len(batches) > 1, plain_interval=0.0) as progress:
        for batch in batches:
            try:
                answer = gateway.bulk(action.value, batch, sender=sender, region=region, reason=reason)
            except GatewayError as error:
                failure = error
                break
            batch_results = answer.get("results")
            if not isinstance(batch_results, list) or len(batch_results) != len(batch):
                failure = GatewayError("the gateway answered a report that does not match the numbers sent")
                break
            results += batch_results
            answered_sender = answer.get("sender", answered_sender)
            if "audit" in answer:
                operations.append(answer["audit"])
            progress.update(len(results), len(numbers), state="sent", final=len(results) == len(numbers))
    if failure is not None:
        code = failure.code or ("HttpStatus" + str(failure.status) if failure.status else "GatewayUnreachable")
        for number in numbers[len(results):]:
            results.append({"input": number, "phoneNumber": None, "status": "notSent",
                            "error": {"code": code, "message": "not sent: the run stopped when the gateway refused "
                                      "or did not answer a call (see the error)"}})
    summary = {"total": len(numbers), "succeeded": 0, "invalid": 0, "failed": 0, "notSent": 0}
    for result in results:
        status = result.get("status")
        if status in summary:
            summary[status] += 1
    return ({"action": action.value, "sender": answered_sender, "results": results, "summary": summary,
             "operations": operations}, failure)


def _write_results(report: Mapping[str, Any], *, as_json: bool, output: str | None) -> None:
    rows = [result_row(result) for result in report["results"]]
    if as_json:
        with destination(output) as handle:
            write_json(handle, report)
    elif wants_table(output):
        print_table(RESULT_COLUMNS, rows, status_column="status")
    else:
        with destination(output) as handle:
            write_csv(handle, RESULT_COLUMNS, rows)


# -- history -----------------------------------------------------------------------------------------

@app.command()
def history(
    number: Annotated[str, typer.Argument(help="The phone number (E.164, or national with the gateway's region).")],
    sender: SenderOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many records, newest first.")] = 50,
    url: UrlOption = "",
    key: KeyOption = "",
    as_json: JsonOption = False,
    output: OutputOption = None,
    http_timeout: HttpTimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """A number's audit history: every add, remove (and audited check) of it, newest first."""
    console = stderr_console()
    _require_connection(console, url, key)
    records: list[dict[str, Any]] = []
    with _gateway(url, key, http_timeout, console) as gateway:
        try:
            for record in gateway.history(number, sender=sender, page_size=min(limit, 500)):
                records.append(record)
                if len(records) >= limit:
                    break
        except GatewayError as error:
            _gateway_failure(console, error)
    if as_json:
        with destination(output) as handle:
            write_json(handle, {"value": records})
    elif wants_table(output):
        print_table(("occurredAt", "action", "outcome", "optedOut", "errorCode", "caller", "channel", "reason"),
                    records, status_column=None)
    else:
        with destination(output) as handle:
            write_csv(handle, HISTORY_COLUMNS, records)


# -- jobs --------------------------------------------------------------------------------------------

@job_app.command("submit")
def job_submit(
    action: Annotated[Action, typer.Option("--action", case_sensitive=False, help="What to do with every number.")],
    numbers: NumbersArgument = None,
    file: FileOption = None,
    sender: SenderOption = None,
    region: RegionOption = None,
    reason: ReasonOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a progress bar until it ends.")] = False,
    wait_timeout: WaitTimeoutOption = 0.0,
    poll_interval: PollOption = 1.0,
    url: UrlOption = "",
    key: KeyOption = "",
    as_json: JsonOption = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="With --wait: write the job's report "
                                               "(CSV) to this file once it ends.")] = None,
    quiet: QuietOption = False,
    http_timeout: HttpTimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Upload numbers as a job the gateway works through on its own; prints the job's id."""
    console = stderr_console()
    _require_connection(console, url, key)
    if output is not None and not wait:
        _fail(console, ExitCode.USAGE, "--output needs --wait (or fetch it later: optouts job report ID)")
    try:
        phone_numbers = gather(numbers or [], file)
    except InputError as error:
        _fail(console, ExitCode.USAGE, str(error))
    with _gateway(url, key, http_timeout, console) as gateway:
        try:
            job = gateway.submit_job(action.value, _csv_body(phone_numbers), content_type="text/csv; charset=utf-8",
                                     sender=sender, region=region, reason=reason)
        except GatewayError as error:
            _gateway_failure(console, error)
        job_id = _job_id(console, job)
        if not quiet:
            note(console, f"job {job_id}: {job.get('state', 'queued')}, {len(phone_numbers)} numbers to {action.value}")
        if wait:
            job = _follow(gateway, job, console, quiet=quiet, wait_timeout=wait_timeout, poll_interval=poll_interval)
            if output is not None and job.get("state") in ("completed", "cancelled"):
                _save_report(gateway, job_id, output, console)
    if as_json:
        write_json(sys.stdout, job)
    else:
        print(job_id, flush=True)
    if wait:
        raise typer.Exit(int(_job_exit_code(job)))


@job_app.command("status")
def job_status(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a progress bar until it ends.")] = False,
    wait_timeout: WaitTimeoutOption = 0.0,
    poll_interval: PollOption = 1.0,
    url: UrlOption = "",
    key: KeyOption = "",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    http_timeout: HttpTimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """A job's state and progress; with --wait, a live progress bar until it ends."""
    console = stderr_console()
    _require_connection(console, url, key)
    with _gateway(url, key, http_timeout, console) as gateway:
        try:
            job = gateway.job(job_id)
        except GatewayError as error:
            _gateway_failure(console, error)
        if wait:
            job = _follow(gateway, job, console, quiet=quiet, wait_timeout=wait_timeout, poll_interval=poll_interval)
    if as_json:
        write_json(sys.stdout, job)
    else:
        print(_job_line(job), flush=True)
    if wait or job.get("state") in TERMINAL_STATES:
        raise typer.Exit(int(_job_exit_code(job)))


@job_app.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    url: UrlOption = "",
    key: KeyOption = "",
    as_json: JsonOption = False,
    http_timeout: HttpTimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Cancel a job: numbers not yet processed are left alone (those done stay done)."""
    console = stderr_console()
    _require_connection(console, url, key)
    with _gateway(url, key, http_timeout, console) as gateway:
        try:
            job = gateway.cancel_job(job_id)
        except GatewayError as error:
            _gateway_failure(console, error)
    if as_json:
        write_json(sys.stdout, job)
    else:
        print(_job_line(job), flush=True)


@job_app.command("report")
def job_report(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    url: UrlOption = "",
    key: KeyOption = "",
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines (one object per number) "
                                          "instead of CSV.")] = False,
    output: OutputOption = None,
    http_timeout: HttpTimeoutOption = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """A finished job's report: one row per input number (input,e164,status,code,message,optedOut)."""
    console = stderr_console()
    _require_connection(console, url, key)
    with _gateway(url, key, http_timeout, console) as gateway:
        statuses = _save_report(gateway, job_id, output, console, as_json=as_json)
    if any(status != "succeeded" for status in statuses):
        raise typer.Exit(int(ExitCode.NUMBERS_NOT_SUCCEEDED))


def _csv_body(numbers: list[str]) -> bytes:
    """The numbers as the jobs API's CSV (docs/jobs.md): a header naming the column, one number a
    row. Whatever layout the operator's file had, the gateway reads one (rows count from the header)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["phoneNumber"])
    writer.writerows([number] for number in numbers)
    return buffer.getvalue().encode("utf-8")


def _job_id(console: Console, job: Mapping[str, Any]) -> str:
    job_id = job.get("id")
    if not isinstance(job_id, str) or not job_id:
        _fail(console, ExitCode.GATEWAY, "the gateway answered a job without an id")
    return printable(job_id, 128)


def _follow(gateway: Gateway, job: dict[str, Any], console: Console, *, quiet: bool, wait_timeout: float,
            poll_interval: float) -> dict[str, Any]:
    """Poll the job until it ends (or wait_timeout passes), drawing its progress."""
    job_id = _job_id(console, job)
    deadline = time.monotonic() + wait_timeout if wait_timeout > 0 else None
    with ProgressView(console, f"job {job_id[:12]}", enabled=not quiet) as progress:
        while True:
            _draw(progress, job)
            if _settled(job):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                note(console, f"job {job_id}: still {job.get('state')} after {wait_timeout:g} s; it goes on "
                     f"(optouts job status {job_id} --wait)")
                raise typer.Exit(int(ExitCode.JOB_NOT_FINISHED))
            try:
                time.sleep(poll_interval)
                job = gateway.job(job_id)
            except GatewayError as error:
                _gateway_failure(console, error)
            except KeyboardInterrupt:
                # Ctrl+C stops the watching, not the job (that is `optouts job cancel`).
                note(console, f"job {job_id}: no longer followed; it goes on (optouts job cancel {job_id} stops it)")
                raise typer.Exit(INTERRUPTED) from None


def _settled(job: Mapping[str, Any]) -> bool:
    """Final, and nothing more to come: a cancelled job's running work items still finish theirs,
    and its report is ready only then (docs/jobs.md: final and reportReady, or failed)."""
    state = job.get("state")
    return state in TERMINAL_STATES and (state == "failed" or job.get("reportReady", True) is not False)


def _draw(progress: ProgressView, job: Mapping[str, Any]) -> None:
    total = job.get("total")
    processed = job.get("processed")
    state = str(job.get("state") or "")
    progress.update(processed if isinstance(processed, int) else 0, total if isinstance(total, int) else None,
                    state=printable(state, 20), rate=_number(job.get("ratePerSecond")),
                    eta=_number(job.get("etaSeconds")), final=_settled(job))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _job_line(job: Mapping[str, Any]) -> str:
    counts = job.get("counts") if isinstance(job.get("counts"), Mapping) else {}
    assert isinstance(counts, Mapping)  # nosec B101 - narrows the type for mypy
    counted = ", ".join(f"{printable(str(name), 32)} {value}" for name, value in counts.items()
                        if isinstance(value, int))
    line = (f"job {printable(str(job.get('id')), 128)}: {printable(str(job.get('state')), 20)}, "
            f"{job.get('processed', 0)}/{job.get('total', '?')} processed")
    return line + (f" ({counted})" if counted else "")


def _job_exit_code(job: Mapping[str, Any]) -> ExitCode:
    state = job.get("state")
    if state in ("failed", "cancelled"):
        return ExitCode.JOB_UNSUCCESSFUL
    if state != "completed":
        return ExitCode.OK if state in ("queued", "running") else ExitCode.GATEWAY
    counts = job.get("counts") if isinstance(job.get("counts"), Mapping) else {}
    assert isinstance(counts, Mapping)  # nosec B101 - narrows the type for mypy
    not_succeeded = sum(value for name, value in counts.items() if name != "succeeded" and isinstance(value, int))
    return ExitCode.NUMBERS_NOT_SUCCEEDED if not_succeeded else ExitCode.OK


def _save_report(gateway: Gateway, job_id: str, output: str | None, console: Console, *,
                 as_json: bool = False) -> list[str]:
    """Write the report (CSV as the gateway sent it, its cells already spreadsheet-safe, or JSON
    lines); answer the status of each row."""
    try:
        text = b"".join(gateway.job_report(job_id)).decode("utf-8-sig")
    except GatewayError as error:
        if error.code == "NoReport":
            _fail(console, ExitCode.JOB_UNSUCCESSFUL, f"job {job_id} failed and has no report "
                  f"(optouts job status {job_id} says why)")
        if error.status == 409:
            _fail(console, ExitCode.JOB_NOT_FINISHED, f"job {job_id} has no report yet: it comes once the job "
                  f"has ended (optouts job status {job_id} --wait)")
        _gateway_failure(console, error)
    except UnicodeDecodeError:
        _fail(console, ExitCode.GATEWAY, "the gateway's report is not UTF-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    with destination(output) as handle:
        if as_json:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            handle.write(text)
    return [row.get("status") or "" for row in rows]
