"""The CLI's input and output rules, without a gateway: files of numbers, CSV cells, the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from optouts_cli.gateway import Gateway, UsageError
from optouts_cli.numbers import InputError, gather, parse_numbers, read_numbers_file
from optouts_cli.text import csv_cell, printable


@pytest.mark.parametrize(("text", "expected"), [
    ("+14255550100\n(425) 555-0101\n\n", ["+14255550100", "(425) 555-0101"]),  # one a line, blanks skipped
    ("name,Phone Number\nAda,+14255550100\nGrace,\nLin,4255550101\n", ["+14255550100", "4255550101"]),
    ("id;MSISDN\n1;+14255550100\n2;+14255550101\n", ["+14255550100", "+14255550101"]),  # ; as delimiter
    ("first,last\n+14255550100,x\n", ["+14255550100"]),  # a header without digits: the first column
    ("+14255550100,Ada\n+14255550101,Grace\n", ["+14255550100", "+14255550101"]),  # no header at all
    ('number\n"+1 (425) 555-0100"\n', ["+1 (425) 555-0100"]),
    ("phone_number\tname\n+14255550100\tAda\n", ["+14255550100"]),
])
def test_numbers_are_read_from_the_right_column(text: str, expected: list[str]) -> None:
    assert parse_numbers(text) == expected


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffPhone,Name\r\n+14255550100,Ada\r\n".encode())
    assert read_numbers_file(str(path)) == ["+14255550100"]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "holds no phone numbers"),
    (b"phone\n\n", "holds no phone numbers"),
    (b"\xff\xfe+\x001\x00", "not UTF-8"),
    (b"number\n" + b"1" * 65 + b"\n", "line 2: the cell is longer than 64"),
])
def test_unreadable_files_are_refused_before_anything_is_sent(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "numbers.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_numbers_file(str(path))


def test_arguments_come_before_the_file(tmp_path: Path) -> None:
    path = tmp_path / "n.txt"
    path.write_text("+14255550102\n", encoding="utf-8")
    assert gather([" +14255550101 ", ""], str(path)) == ["+14255550101", "+14255550102"]
    with pytest.raises(InputError, match="give phone numbers"):
        gather([], None)


@pytest.mark.parametrize(("value", "cell"), [
    ("+14255550100", "+14255550100"),
    ("+1 (425) 555-0100", "+1 (425) 555-0100"),
    ("-", "-"),
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("@SUM(1)", "'@SUM(1)"),
    (True, "true"),
    (None, ""),
    ("succeeded", "succeeded"),
])
def test_csv_cells_are_never_formulas(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


def test_the_gateways_text_cannot_drive_the_terminal() -> None:
    assert printable("bad\x1b[2Jthing\u202e\n", 100) == "bad\ufffd[2Jthing\ufffd\ufffd"
    assert printable("x" * 10, 4) == "xxxx…"


@pytest.mark.parametrize("url", ["https://gw.example/api", "https://gw.example/", "https://gw.example"])
def test_the_url_may_name_the_api_or_the_host(url: str) -> None:
    with Gateway(url, "k") as gateway:
        assert gateway.base_url == "https://gw.example"


@pytest.mark.parametrize("url", ["gw.example", "ftp://gw.example", "https://gw.example/api?code=k",
                                 "https://user:pw@gw.example", "https://gw.example/#x"])
def test_urls_that_could_carry_a_secret_or_go_nowhere_are_refused(url: str) -> None:
    with pytest.raises(UsageError):
        Gateway(url, "k")


def test_next_links_are_followed_on_the_url_given_only() -> None:
    with Gateway("https://gw.example/prefix", "k") as gateway:
        assert (gateway._same_origin("https://internal:7071/api/optouts/%2B1/history?top=5&continuationToken=x")
                == "https://gw.example/prefix/api/optouts/%2B1/history?top=5&continuationToken=x")
