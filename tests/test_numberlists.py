"""Lists of numbers as operators upload them: every malformed shape is a 400 naming its rows."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optouts.domain.jobs import safe_cell
from optouts.domain.numberlists import CSV, NDJSON, NumberListReader, blob_format, media_type_format
from optouts.domain.problems import Problem


def read(data: bytes, list_format: str = CSV, *, max_rows: int = 100, chunk: int | None = None) -> list[str]:
    chunks = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    return list(NumberListReader(chunks, list_format, max_rows=max_rows).cells())


def refusal(data: bytes, list_format: str = CSV, **options: int) -> Problem:
    with pytest.raises(Problem) as caught:
        read(data, list_format, **options)
    assert caught.value.status == 400
    return caught.value


def test_the_number_column_is_found_by_its_header_or_is_the_first() -> None:
    assert read(b"name,Phone Number,city\r\nAda,+14255550100,x\r\nGrace,\"(425) 555-0101\",y\r\n") == [
        "+14255550100", "(425) 555-0101"]
    assert read(b"MSISDN\n14255550100\n") == ["14255550100"]
    assert read(b"contact,note\n+14255550100,a\n") == ["+14255550100"]  # no number header: the first column


def test_a_byte_order_mark_and_trailing_blank_lines_are_accepted() -> None:
    assert read(b"\xef\xbb\xbfphone\r\n+14255550100\r\n\r\n\r\n") == ["+14255550100"]
    assert read(b"\xef\xbb\xbf\"+14255550100\"\n", NDJSON) == ["+14255550100"]


def test_a_missing_header_is_refused() -> None:
    problem = refusal(b"+14255550100\n+14255550101\n")
    assert problem.code == "CsvHeaderMissing"
    assert list(problem.errors) == ["row 1"]


def test_a_wrong_delimiter_is_refused() -> None:
    problem = refusal(b"phone;name\n+14255550100;Ada\n")
    assert problem.code == "CsvWrongDelimiter"
    assert list(problem.errors) == ["row 1"]


def test_blank_lines_inside_are_refused_with_their_row_numbers() -> None:
    problem = refusal(b"phone\n+14255550100\n\n+14255550101\n\n\n+14255550102\n")
    assert problem.code == "InvalidCsv"
    assert list(problem.errors) == ["row 3", "row 5", "row 6"]
    assert "row 3" in problem.detail


def test_ragged_rows_and_broken_quotes_are_refused_with_row_numbers() -> None:
    problem = refusal(b"phone,name\n+14255550100,Ada\n+14255550101,Grace,extra\n+14255550102,Bob\n")
    assert problem.errors == {"row 3": ["has 3 fields; the header has 2"]}
    problem = refusal(b"phone,name\n+14255550100,Ada\n\"+14255550101,Grace\n")
    assert problem.code == "InvalidCsv" and list(problem.errors) == ["row 3"]


def test_rows_beyond_the_limit_are_refused_naming_the_first() -> None:
    data = b"phone\n" + b"".join(b"+1425555%04d\n" % n for n in range(12))
    assert len(read(data, max_rows=12)) == 12
    problem = refusal(data, max_rows=10)
    assert problem.code == "TooManyRows"
    assert list(problem.errors) == ["row 12"]  # the header is row 1: the 11th data row


def test_text_that_is_not_utf8_is_refused() -> None:
    problem = refusal(b"phone,name\n+14255550100,a\n+1425\xff5550101,b\n")
    assert (problem.code, list(problem.errors)) == ("InvalidEncoding", ["row 3"])
    # Other columns are never read, so a name in another encoding does not refuse the list.
    assert read(b"phone,name\n+14255550100,Ren\xe9e\n") == ["+14255550100"]


def test_an_empty_list_is_refused() -> None:
    assert refusal(b"").code == "EmptyInput"
    assert refusal(b"phone\r\n").code == "EmptyInput"
    assert refusal(b"\n\n", NDJSON).code == "EmptyInput"


def test_cells_that_are_not_numbers_are_kept_for_the_report() -> None:
    """A bad number is an `invalid` row of the report, not a malformed list."""
    assert read(b"phone,name\nhello,Ada\n,Grace\n") == ["hello", ""]


def test_overlong_cells_are_refused() -> None:
    problem = refusal(b"phone\n" + b"1" * 65 + b"\n")
    assert list(problem.errors) == ["row 2"]


def test_json_lines_take_strings_and_objects() -> None:
    data = b'"+14255550100"\r\n{"phoneNumber": "+14255550101", "name": "Ada"}\n"x"'
    assert read(data, NDJSON) == ["+14255550100", "+14255550101", "x"]
    problem = refusal(b'"+14255550100"\n42\n{"number": "1"}\nnot json\n\n"+1"\n', NDJSON)
    assert problem.code == "InvalidNdjson"
    assert list(problem.errors) == ["line 2", "line 3", "line 4", "line 5"]


def test_at_most_twenty_errors_are_listed_and_all_are_counted() -> None:
    data = b"phone,name\n" + b"+14255550100,a,b\n" * 30
    problem = refusal(data)
    assert len(problem.errors) == 20
    assert "30 problems" in problem.detail


@given(st.lists(st.text(alphabet="+0123456789 ()-,\"x", max_size=20), min_size=1, max_size=30),
       st.integers(min_value=1, max_value=17))
def test_chunk_boundaries_never_change_what_is_read(cells: list[str], chunk: int) -> None:
    data = b"".join(orjson.dumps(cell) + b"\n" for cell in cells)
    assert read(data, NDJSON, chunk=chunk) == read(data, NDJSON) == cells
    # A blank cell in a one-column CSV is a blank line, refused; the others read back as written.
    kept = [cell for cell in cells if cell.strip()]
    csv_data = b"phone\r\n" + b"".join(b'"' + cell.replace('"', '""').encode() + b'"\r\n' for cell in kept)
    if kept:
        assert read(csv_data, CSV, chunk=chunk) == kept


def test_media_types_and_blob_formats() -> None:
    assert media_type_format("text/csv; charset=utf-8") == CSV
    assert media_type_format("application/x-ndjson") == NDJSON
    assert media_type_format("application/json") is None
    assert blob_format("list.CSV", None) == CSV
    assert blob_format("list", "text/csv") == CSV
    assert blob_format("list.ndjson", None) == NDJSON


def test_report_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    assert safe_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("+A1") == "'+A1"
    assert safe_cell("+14255550100") == "+14255550100"
    assert safe_cell("-1") == "-1"
    assert safe_cell("(425) 555-0100") == "(425) 555-0100"
