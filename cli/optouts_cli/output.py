"""Where results go: CSV (a file or a pipe), a table (a terminal), JSON (`--json`); and what the
operator reads on standard error: notes, errors and progress.

Standard output carries only results, so that `optouts check ... > out.csv` or `| jq` work;
everything meant for a person goes to standard error.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from optouts_cli.text import csv_cell, printable

#: The columns of a results CSV, the same for add, remove and check, and the same as a job report's.
RESULT_COLUMNS = ("input", "e164", "status", "code", "message", "optedOut")
HISTORY_COLUMNS = ("occurredAt", "action", "outcome", "optedOut", "errorCode", "sender", "phoneNumber", "caller",
                   "callerVerified", "channel", "operationId", "correlationId", "reason")
_STATUS_STYLES = {"succeeded": "green", "invalid": "yellow", "failed": "red", "notSent": "red"}
#: Without a terminal, a progress line at most this often (and at every change of state).
PLAIN_PROGRESS_INTERVAL_SECONDS = 2.0


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def note(console: Console, message: str, *, style: str | None = None) -> None:
    """A line for the operator; never markup (the text may hold the gateway's words)."""
    console.print(Text(message, style=style or ""))


def result_row(result: Mapping[str, Any]) -> dict[str, Any]:
    error = result.get("error") if isinstance(result.get("error"), Mapping) else {}
    assert isinstance(error, Mapping)  # nosec B101 - narrows the type for mypy
    return {"input": result.get("input"), "e164": result.get("phoneNumber"), "status": result.get("status"),
            "optedOut": result.get("optedOut"), "code": error.get("code"), "message": error.get("message")}


@contextmanager
def destination(output: str | None) -> Iterator[IO[str]]:
    """The file named by --output (written whole or not at all: a temporary file renamed at the
    end), else standard output."""
    if output is None or output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(output)
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        try:
            yield handle
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
    partial.replace(target)


def write_csv(handle: IO[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in columns])


def write_json(handle: IO[str], value: Any) -> None:
    handle.write(json.dumps(value, ensure_ascii=False, indent=2))
    handle.write("\n")


def wants_table(output: str | None) -> bool:
    return (output is None or output == "-") and sys.stdout.isatty()


def print_table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *, status_column: str | None) -> None:
    table = Table(*columns, show_lines=False, header_style="bold")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else ("yes" if value is True else "no" if value is False else str(value))
            style = _STATUS_STYLES.get(text, "") if column == status_column else ""
            cells.append(Text(printable(text, 300), style=style))
        table.add_row(*cells)
    Console(highlight=False).print(table)


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    write_csv(buffer, columns, rows)
    return buffer.getvalue()


def summary_line(summary: Mapping[str, Any]) -> str:
    parts = [f"{summary.get(name, 0)} {name}" for name in ("succeeded", "invalid", "failed")]
    if summary.get("notSent"):
        parts.append(f"{summary['notSent']} not sent")
    return f"{summary.get('total', 0)} numbers: " + ", ".join(parts)


class ProgressView:
    """A live bar on a terminal; elsewhere (CI logs, captured output) a plain line per change of
    state and at most one every PLAIN_PROGRESS_INTERVAL_SECONDS, so that a log stays short."""

    def __init__(self, console: Console, label: str, *, enabled: bool = True,
                 plain_interval: float = PLAIN_PROGRESS_INTERVAL_SECONDS) -> None:
        self._console = console
        self._label = label
        self._enabled = enabled
        self._plain_interval = plain_interval
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain: tuple[str, int] | None = None
        self._last_plain_at = 0.0

    def __enter__(self) -> ProgressView:
        return self

    def _start_bar(self, total: int | None) -> tuple[Progress, TaskID]:
        # Started at the first update, so that its first frame already shows the total.
        if self._progress is None or self._task is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[state]}"), TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"),
                console=self._console, transient=False, auto_refresh=True, refresh_per_second=4,
            )
            self._task = self._progress.add_task(self._label, total=total, state="", rate="", eta="")
            self._progress.start()
        return self._progress, self._task

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, processed: int, total: int | None, *, state: str = "", rate: float | None = None,
               eta: float | None = None, final: bool = False) -> None:
        if not self._enabled:
            return
        rate_text = f"{rate:,.0f}/s" if isinstance(rate, int | float) and rate > 0 else ""
        eta_text = f"eta {_duration(eta)}" if isinstance(eta, int | float) and eta >= 0 and not final else ""
        if self._console.is_terminal:
            bar, task = self._start_bar(total)
            bar.update(task, completed=processed, total=total, state=state, rate=rate_text, eta=eta_text)
            return
        now = time.monotonic()
        changed_state = self._last_plain is None or self._last_plain[0] != state
        moved = self._last_plain is None or self._last_plain[1] != processed
        if not (final or changed_state or (moved and now - self._last_plain_at >= self._plain_interval)):
            return
        self._last_plain, self._last_plain_at = (state, processed), now
        of_total = f"{processed}/{total}" if total is not None else f"{processed}"
        percent = f" ({100 * processed // total}%)" if total else ""
        extras = ", ".join(part for part in (rate_text, eta_text) if part)
        line = f"{self._label}: {state + ' ' if state else ''}{of_total}{percent}{', ' + extras if extras else ''}"
        note(self._console, line)


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    if whole < 60:
        return f"{whole}s"
    minutes, second = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m"
