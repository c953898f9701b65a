"""The CLI against a gateway on the local host (Azurite, the ACS emulator): check, add, remove,
history; CSV and JSON output; exit codes; the key kept out of every output."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from devtools.localhost import LocalHost

from ..conftest import OTHER_SENDER, SENDER
from ..hardening.gateway import KEY, closed_port
from .conftest import MAX_NUMBERS, connection, invoke

#: Bounded wait for the audit indexer (queue-triggered) to write a number's history.
HISTORY_WAIT_SECONDS = 30


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_add_check_remove_round_trip_as_csv(gateway: LocalHost) -> None:
    env = connection(gateway)
    added = invoke(["add", "+14255550101", "(425) 555-0102", "--reason", "cli test"], env=env)
    assert added.exit_code == 0, added.stderr
    assert [(r["input"], r["e164"], r["status"]) for r in rows(added.stdout)] == [
        ("+14255550101", "+14255550101", "succeeded"), ("(425) 555-0102", "+14255550102", "succeeded")]
    assert "add: 2 numbers: 2 succeeded, 0 invalid, 0 failed" in added.stderr

    checked = invoke(["check", "+14255550101", "+14255550103"], env=env)
    assert checked.exit_code == 0, checked.stderr
    assert [(r["e164"], r["optedOut"]) for r in rows(checked.stdout)] == [
        ("+14255550101", "true"), ("+14255550103", "false")]

    removed = invoke(["remove", "+14255550101"], env=env)
    assert removed.exit_code == 0 and rows(removed.stdout)[0]["status"] == "succeeded"
    again = invoke(["check", "+14255550101"], env=env)
    assert rows(again.stdout)[0]["optedOut"] == "false"


def test_json_output_is_the_merged_report(gateway: LocalHost) -> None:
    ran = invoke(["add", "+14255550111", "--sender", OTHER_SENDER, "--json"], env=connection(gateway))
    assert ran.exit_code == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["action"] == "add" and report["sender"] == OTHER_SENDER
    assert report["summary"] == {"total": 1, "succeeded": 1, "invalid": 0, "failed": 0, "notSent": 0}
    assert [operation["status"] for operation in report["operations"]] == ["accepted"]
    assert len(report["operations"][0]["operationId"]) == 32


def test_an_invalid_number_is_exit_code_1_and_still_reported(gateway: LocalHost) -> None:
    ran = invoke(["check", "+14255550104", "not-a-number"], env=connection(gateway))
    assert ran.exit_code == 1
    results = rows(ran.stdout)
    assert [r["status"] for r in results] == ["succeeded", "invalid"]
    assert results[1]["code"] and results[1]["message"]


def test_numbers_from_a_csv_file_sent_in_batches_with_progress(gateway: LocalHost, tmp_path: Path) -> None:
    numbers = [f"+1425555{n:04d}" for n in range(200, 207)]
    source = tmp_path / "numbers.csv"
    source.write_text("name,Phone Number\n" + "".join(f"n{i},{number}\n" for i, number in enumerate(numbers)),
                      encoding="utf-8")
    output = tmp_path / "results.csv"
    ran = invoke(["add", "--file", str(source), "--batch-size", "3", "--output", str(output)],
                 env=connection(gateway))
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout == ""  # results went to the file
    assert [r["e164"] for r in rows(output.read_text(encoding="utf-8"))] == numbers
    # Three calls (3 + 3 + 1), one plain progress line each when standard error is not a terminal.
    progress = [line for line in ran.stderr.splitlines() if line.startswith("add: sent")]
    assert progress == ["add: sent 3/7 (42%)", "add: sent 6/7 (85%)", "add: sent 7/7 (100%)"]


def test_more_numbers_than_the_gateway_takes_in_one_call(gateway: LocalHost) -> None:
    """The gateway takes MAX_NUMBERS per call; a larger batch is refused whole (413) and the CLI
    says which numbers were not sent; smaller batches get through."""
    numbers = [f"+1425556{n:04d}" for n in range(MAX_NUMBERS + 1)]
    refused = invoke(["check", *numbers, "--batch-size", str(MAX_NUMBERS + 1), "--json"], env=connection(gateway))
    assert refused.exit_code == 3
    assert "TooManyPhoneNumbers" in refused.stderr
    report = json.loads(refused.stdout)
    assert report["summary"]["notSent"] == MAX_NUMBERS + 1
    assert {r["error"]["code"] for r in report["results"]} == {"TooManyPhoneNumbers"}

    batched = invoke(["check", *numbers, "--batch-size", str(MAX_NUMBERS), "--json", "-q"], env=connection(gateway))
    assert batched.exit_code == 0 and batched.stderr == ""
    assert json.loads(batched.stdout)["summary"]["succeeded"] == MAX_NUMBERS + 1


def test_numbers_from_standard_input(gateway: LocalHost) -> None:
    ran = invoke(["check", "--file", "-"], env=connection(gateway), stdin="+14255550120\n\n4255550121\n")
    assert ran.exit_code == 0, ran.stderr
    assert [r["e164"] for r in rows(ran.stdout)] == ["+14255550120", "+14255550121"]


def test_history_lists_the_changes_newest_first(gateway: LocalHost) -> None:
    env = connection(gateway)
    number = "+14255550130"
    assert invoke(["add", number, "--reason", "first"], env=env).exit_code == 0
    assert invoke(["remove", number, "--reason", "second"], env=env).exit_code == 0
    deadline = time.monotonic() + HISTORY_WAIT_SECONDS
    records: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        ran = invoke(["history", number, "--json"], env=env)
        assert ran.exit_code == 0, ran.stderr
        records = json.loads(ran.stdout)["value"]
        if len(records) >= 2:
            break
        time.sleep(0.5)
    assert [(r["action"], r["reason"], r["outcome"]) for r in records] == [
        ("remove", "second", "succeeded"), ("add", "first", "succeeded")]

    as_csv = invoke(["history", number, "--limit", "1"], env=env)
    assert as_csv.exit_code == 0
    assert [(r["action"], r["phoneNumber"], r["sender"]) for r in rows(as_csv.stdout)] == [("remove", number, SENDER)]


def test_a_wrong_key_is_exit_code_3_and_never_echoed(gateway: LocalHost) -> None:
    wrong = "wrong-" + KEY
    ran = invoke(["check", "+14255550140"], env={"OPTOUTS_URL": gateway.base_url, "OPTOUTS_KEY": wrong})
    assert ran.exit_code == 3
    assert "refused the function key (401)" in ran.stderr
    assert wrong not in ran.stderr + ran.stdout and KEY not in ran.stderr + ran.stdout


def test_a_gateway_refusal_names_its_code_and_trace(gateway: LocalHost) -> None:
    ran = invoke(["add", "+14255550141", "--sender", "+18005559999"], env=connection(gateway))
    assert ran.exit_code == 3
    assert "403" in ran.stderr and "[SenderNotAllowed]" in ran.stderr and "traceId 00-" in ran.stderr
    assert KEY not in ran.stderr + ran.stdout


def test_an_unreachable_gateway_is_exit_code_3() -> None:
    ran = invoke(["check", "+14255550142", "--url", f"http://127.0.0.1:{closed_port()}", "--key", KEY,
                  "--http-timeout", "5"])
    assert ran.exit_code == 3
    assert "could not reach the gateway" in ran.stderr
    assert KEY not in ran.stderr + ran.stdout


def test_usage_errors_are_exit_code_2_and_send_nothing(tmp_path: Path) -> None:
    assert invoke(["check", "+14255550143"], env={"OPTOUTS_KEY": KEY}).exit_code == 2  # no URL
    no_key = invoke(["check", "+14255550143", "--url", "http://127.0.0.1:1"])
    assert no_key.exit_code == 2 and "OPTOUTS_KEY" in no_key.stderr
    in_url = invoke(["check", "+14255550143", "--url", f"http://127.0.0.1:1/api?code={KEY}", "--key", KEY])
    assert in_url.exit_code == 2 and KEY not in in_url.stderr
    assert invoke(["check"], env={"OPTOUTS_URL": "http://127.0.0.1:1", "OPTOUTS_KEY": KEY}).exit_code == 2
    missing = invoke(["check", "--file", str(tmp_path / "absent.csv"), "--url", "http://127.0.0.1:1", "--key", KEY])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    assert invoke(["frobnicate"]).exit_code == 2
    assert invoke(["check", "1", "--batch-size", "0"]).exit_code == 2


def test_help_never_shows_the_key() -> None:
    secret = "a-secret-function-key-value"
    for args in (["--help"], ["check", "--help"], ["job", "submit", "--help"]):
        ran = invoke(args, env={"OPTOUTS_KEY": secret, "OPTOUTS_URL": "http://127.0.0.1:1"})
        assert ran.exit_code == 0
        assert secret not in ran.stdout + ran.stderr
    assert "OPTOUTS_KEY" in invoke(["check", "--help"]).stdout
