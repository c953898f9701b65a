"""Lists of phone numbers as operators have them: CSV files and JSON lines (docs/jobs.md).

Read row by row from a stream of byte chunks, so a list is never held whole: each valid row
yields the raw number cell, and every malformed row is collected (row numbers as a spreadsheet
shows them, the header being row 1) and raised once the input is exhausted, as one 400
`Problem`. Numbers are not validated here: a cell that is no phone number is the report's
`invalid` row, not a malformed list.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from optouts.domain.limits import MAX_INPUT_LENGTH
from optouts.domain.problems import MAX_FIELD_ERRORS, Problem

CSV = "csv"
NDJSON = "ndjson"
FORMATS = (CSV, NDJSON)
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv"})
NDJSON_MEDIA_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})

#: Header names (lower-cased, without spaces, `_` and `-`) that mark the numbers' column.
NUMBER_HEADERS = ("phone", "phonenumber", "number", "msisdn", "mobile", "mobilenumber", "cell", "e164", "tel",
                  "telephone")
#: A JSON line longer than this is refused before it is parsed.
MAX_NDJSON_LINE_BYTES = 4096
_OTHER_DELIMITERS = (";", "\t", "|")


def media_type_format(content_type: str | None) -> str | None:
    """`csv`, `ndjson` or None for a Content-Type header's media type."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in CSV_MEDIA_TYPES:
        return CSV
    if media in NDJSON_MEDIA_TYPES:
        return NDJSON
    return None


def blob_format(name: str, content_type: str | None) -> str:
    """A referenced blob's format: CSV by its name or Content-Type, JSON lines otherwise."""
    if name.lower().endswith(".csv") or media_type_format(content_type) == CSV:
        return CSV
    return NDJSON


class NumberListReader:
    """`cells()` yields each data row's number; raises the collected errors at the end."""

    def __init__(self, chunks: Iterable[bytes], list_format: str, *, max_rows: int) -> None:
        if list_format not in FORMATS:
            raise ValueError(f"unknown list format {list_format!r}")
        self._chunks = chunks
        self._format = list_format
        self._max_rows = max_rows
        self._errors: dict[str, list[str]] = {}
        self._error_count = 0
        self._first_code: str | None = None
        self._over_limit = False
        #: Data rows yielded so far.
        self.rows = 0

    def cells(self) -> Iterator[str]:
        source = self._csv_cells() if self._format == CSV else self._ndjson_cells()
        yield from source
        if self._error_count:
            raise self._problem()
        if self.rows == 0:
            raise Problem(400, "EmptyInput", "Invalid list of numbers",
                          "the list has no data rows" + (" (a header only)" if self._format == CSV else ""))

    # -- errors -----------------------------------------------------------------------------------

    def _error(self, where: str, code: str, message: str) -> None:
        self._error_count += 1
        self._first_code = self._first_code or code
        if len(self._errors) < MAX_FIELD_ERRORS:
            self._errors.setdefault(where, []).append(message)

    def _problem(self) -> Problem:
        first = next(iter(self._errors.items()))
        more = f" ({self._error_count} problems in all; the first {len(self._errors)} are listed)" \
            if self._error_count > 1 else ""
        detail = f"{first[0]}: {first[1][0]}{more}"
        return Problem(400, self._first_code or "InvalidCsv", "Invalid list of numbers", detail, errors=self._errors)

    def _counted(self, where: str) -> bool:
        """Count one more data row; False (and an error, once) beyond the limit."""
        if self.rows >= self._max_rows:
            self._error(where, "TooManyRows", f"is beyond the limit of {self._max_rows} data rows per job")
            self._over_limit = True
            return False
        self.rows += 1
        return True

    # -- CSV --------------------------------------------------------------------------------------

    def _csv_cells(self) -> Iterator[str]:
        text = _text_stream(self._chunks)
        reader = csv.reader(text, strict=True)
        row_number = 0
        try:
            header = next(reader, None)
            row_number = 1
            if header is None or not any(cell.strip() for cell in header):
                return  # EmptyInput (or a blank first line, which is no header either)
            column = self._number_column(header)
            if column is None:
                return
            blank_rows: list[int] = []
            for record in reader:
                row_number += 1
                if not record or (len(record) == 1 and not record[0].strip()):
                    blank_rows.append(row_number)
                    continue
                for blank in blank_rows:
                    self._error(f"row {blank}", "InvalidCsv",
                                "is blank; blank lines are allowed only at the end of the file")
                blank_rows.clear()
                cell = self._csv_cell(record, header, column, row_number)
                if cell is not None and self._counted(f"row {row_number}"):
                    yield cell
                elif self._over_limit:
                    return
        except csv.Error as error:
            self._error(f"row {row_number + 1}", "InvalidCsv", f"is not valid CSV ({str(error)[:100]})")

    def _number_column(self, header: list[str]) -> int | None:
        if len(header) == 1 and any(d in header[0] for d in _OTHER_DELIMITERS):
            self._error("row 1", "CsvWrongDelimiter",
                        "the header holds one column with ';', tab or '|' in it: send comma-separated values")
            return None
        names = ["".join(c for c in cell.lower() if c not in " _-\ufeff") for cell in header]
        column = next((index for index, name in enumerate(names) if name in NUMBER_HEADERS), 0)
        first = header[column].strip()
        digits = sum(c.isdigit() for c in first)
        if digits >= 5 and not any(c.isalpha() for c in first):
            self._error("row 1", "CsvHeaderMissing",
                        "looks like a phone number, not a header: add a header row such as phoneNumber")
            return None
        return column

    def _csv_cell(self, record: list[str], header: list[str], column: int, row: int) -> str | None:
        where = f"row {row}"
        if len(record) > len(header):
            self._error(where, "InvalidCsv", f"has {len(record)} fields; the header has {len(header)}")
            return None
        if column >= len(record):
            self._error(where, "InvalidCsv", f"has {len(record)} fields and none under the header "
                                             f"{_quoted(header[column])}")
            return None
        cell = record[column]
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8, kept as surrogates to name the row
            self._error(where, "InvalidEncoding", "the phone number is not valid UTF-8")
            return None
        return self._checked_cell(cell, where, "InvalidCsv")

    def _checked_cell(self, cell: str, where: str, code: str) -> str | None:
        if "\ufeff" in cell or "\x00" in cell:
            self._error(where, code, "holds a byte-order mark or a NUL character inside the text")
            return None
        if len(cell) > MAX_INPUT_LENGTH:
            self._error(where, code, f"the phone number is longer than {MAX_INPUT_LENGTH} characters")
            return None
        return cell

    # -- JSON lines -------------------------------------------------------------------------------

    def _ndjson_cells(self) -> Iterator[str]:
        blank_lines: list[int] = []
        line_number = 0
        for line in _lines(self._chunks, MAX_NDJSON_LINE_BYTES):
            line_number += 1
            where = f"line {line_number}"
            if line is None:
                self._error(where, "InvalidNdjson", f"is longer than {MAX_NDJSON_LINE_BYTES} bytes")
                continue
            if line_number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                blank_lines.append(line_number)
                continue
            for blank in blank_lines:
                self._error(f"line {blank}", "InvalidNdjson",
                            "is blank; blank lines are allowed only at the end of the file")
            blank_lines.clear()
            cell = self._ndjson_cell(line, where)
            if cell is not None and self._counted(where):
                yield cell
            elif self._over_limit:
                return

    def _ndjson_cell(self, line: bytes, where: str) -> str | None:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            self._error(where, "InvalidEncoding", "is not valid UTF-8")
            return None
        try:
            value: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._error(where, "InvalidNdjson", "is not JSON")
            return None
        if isinstance(value, dict):
            value = value.get("phoneNumber")
        if not isinstance(value, str):
            self._error(where, "InvalidNdjson", 'must be a JSON string or an object with a string "phoneNumber"')
            return None
        return self._checked_cell(value, where, "InvalidNdjson")


def _quoted(text: str) -> str:
    return repr(text[:40])


class _ChunkStream(io.RawIOBase):
    """Byte chunks as a readable stream, for TextIOWrapper."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = bytes(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _text_stream(chunks: Iterable[bytes]) -> io.TextIOWrapper:
    # utf-8-sig drops a leading byte-order mark, as Excel's "CSV UTF-8" writes one; newline=""
    # leaves line endings to the csv module (RFC 4180: quoted fields may hold line breaks); bytes
    # that are not UTF-8 become surrogates, refused in the number's cell with its row number.
    return io.TextIOWrapper(io.BufferedReader(_ChunkStream(chunks)), encoding="utf-8-sig",
                            errors="surrogateescape", newline="")


def _lines(chunks: Iterable[bytes], max_line: int) -> Iterator[bytes | None]:
    """Lines without their ending (LF or CRLF); None for a line longer than `max_line`, whose
    bytes are skipped without being kept. A final line without an ending counts; a final
    empty one (the file ends with a line break) does not."""
    pending = b""
    too_long = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not too_long:
                    pending += chunk[start:]
                    if len(pending) > max_line:
                        too_long, pending = True, b""
                break
            if too_long:
                yield None
            else:
                line = pending + chunk[start:end]
                yield None if len(line) > max_line + 1 else line.removesuffix(b"\r")
            pending, too_long = b"", False
            start = end + 1
    if too_long:
        yield None
    elif pending:
        yield pending.removesuffix(b"\r")
