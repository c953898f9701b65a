"""Phone numbers from the command line or a file: CSV with a header naming the column, CSV
without one (the first column), or one number per line (a one-column CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

#: Header names (compared without case, spaces, `_`, `-` or `.`) that mark the column of numbers: the
#: names the jobs API recognizes (docs/jobs.md), so a file reads the same sent directly or as a job.
NUMBER_COLUMNS = ("phonenumber", "phone", "number", "msisdn", "e164", "mobile", "mobilenumber", "cell", "tel",
                  "telephone", "phonenumbers")
#: The largest file read: far above any list an operator handles, small enough for memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: A single cell longer than this is not a phone number; the gateway would refuse it anyway.
MAX_CELL_CHARACTERS = 64


class InputError(Exception):
    """The numbers given cannot be read; nothing is sent."""


def _normalize_header(cell: str) -> str:
    return "".join(c for c in cell.lower() if c not in " _-.")


def read_numbers_file(path: str) -> list[str]:
    """The numbers of `path` (`-` is standard input), in file order, blanks skipped."""
    if path == "-":
        import sys

        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    else:
        try:
            with Path(path).open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise InputError(f"cannot read {path}: {error.strerror or type(error).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; split it")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    return parse_numbers(text, source=path)


def parse_numbers(text: str, *, source: str = "input") -> list[str]:
    lines = text.splitlines()
    sample = "\n".join(lines[:20])
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:  # one column, or nothing to go by
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    # (line, row) for each row that is not blank: the line tells the operator where a bad cell is.
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{source} holds no phone numbers")
    column, body = _number_column(rows)
    numbers = []
    for line_number, row in body:
        cell = row[column].strip() if column < len(row) else ""
        if not cell:
            continue
        if len(cell) > MAX_CELL_CHARACTERS:
            raise InputError(f"{source}, line {line_number}: the cell is longer than {MAX_CELL_CHARACTERS} "
                             "characters, not a phone number (wrong column or not a CSV?)")
        numbers.append(cell)
    if not numbers:
        raise InputError(f"{source} holds no phone numbers")
    return numbers


def _number_column(rows: list[tuple[int, list[str]]]) -> tuple[int, list[tuple[int, list[str]]]]:
    """(index of the numbers' column, the rows below any header)."""
    first = rows[0][1]
    header = [_normalize_header(cell) for cell in first]
    for name in NUMBER_COLUMNS:
        if name in header:
            return header.index(name), rows[1:]
    # A first row without a single digit is a header naming something else: the first column then.
    if not any(c.isdigit() for cell in first for c in cell):
        return 0, rows[1:]
    return 0, rows


def gather(arguments: Iterable[str], file: str | None) -> list[str]:
    """The numbers of the command: the arguments, then the file's."""
    numbers = [argument.strip() for argument in arguments if argument.strip()]
    if file is not None:
        numbers += read_numbers_file(file)
    if not numbers:
        raise InputError("give phone numbers as arguments or with --file")
    return numbers
