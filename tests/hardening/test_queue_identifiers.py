"""Caller-supplied identifiers on the queue path, against real storage (Azurite): a correlationId
never names a blob or reaches a log line, and every message ends in exactly one result, even
when the result cannot be written as first asked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from optouts.usecases import queued_requests
from optouts.usecases.queued_requests import MAX_RESULT_MESSAGE_BYTES

from ..conftest import SENDER
from .queue_harness import QueueHarness, message, queue_harness

#: Enough numbers for a `completed` result larger than a queue message.
BIG = 1_000
BLOB_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}/[A-Za-z0-9-]{1,64}\.json$")


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}) as running:
        yield running


@pytest.fixture
def harness(azurite: Azurite, acs: AcsEmulator) -> Iterator[QueueHarness]:
    with queue_harness(azurite, acs) as opened:
        yield opened


def only_result(harness: QueueHarness) -> dict:
    results = harness.take_results()
    assert len(results) == 1, results
    return results[0]


def test_a_dot_segment_correlation_id_writes_no_blob_outside_the_results_container(harness: QueueHarness) -> None:
    before = harness.container_names()
    state = harness.process(message(count=BIG, correlationId="../evil-container/x"), message_id="m-dots")
    result = only_result(harness)
    assert state == "rejected" and result["status"] == "rejected"
    assert result["messageId"] == "m-dots"
    assert "correlationId" in result["error"]["errors"]
    assert "evil-container" not in harness.container_names() - before


def test_blob_names_come_from_gateway_ids_only(harness: QueueHarness) -> None:
    assert harness.process(message(count=BIG, correlationId="ticket-4711"), message_id="6f1c0a5e-1") == "completed"
    result = only_result(harness)
    assert result["correlationId"] == "ticket-4711" and "results" not in result
    pointer = result["resultsBlob"]
    assert pointer["container"] == harness.container_name
    assert BLOB_NAME.match(pointer["name"]) and "ticket-4711" not in pointer["name"], pointer
    assert pointer["name"].endswith("/6f1c0a5e-1.json")
    blob = harness.container.download_blob(pointer["name"]).readall()
    assert len(blob) > MAX_RESULT_MESSAGE_BYTES and b'"ticket-4711"' in blob


def test_a_hostile_message_id_does_not_name_a_blob_either(harness: QueueHarness) -> None:
    assert harness.process(message(count=BIG, correlationId="c-1"), message_id="../../x\x01y") == "completed"
    result = only_result(harness)
    assert result["messageId"] == "../../x\x01y"  # reported as the host gave it, never used as a name
    assert BLOB_NAME.match(result["resultsBlob"]["name"]), result["resultsBlob"]
    names = [blob.name for blob in harness.container.list_blobs()]  # Azurite answered 500 on \x01
    assert names == [result["resultsBlob"]["name"]]


def test_control_characters_in_a_correlation_id_are_rejected_and_never_logged(
    harness: QueueHarness, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "x\r\n2026-12-01 00:00:00 INFO optouts: FORGED"
    with caplog.at_level(logging.DEBUG):
        state = harness.process(message(count=1, correlationId=forged), message_id="m-crlf")
    result = only_result(harness)
    assert state == "rejected" and result["messageId"] == "m-crlf"
    assert result.get("correlationId") in (None, "m-crlf")
    for record in caplog.records:
        lines = record.getMessage().splitlines()
        assert not any(line.startswith("2026-12-01 00:00:00") for line in lines), lines
        if not record.name.startswith("azure"):  # the SDK's own request logs are multi-line by design
            assert len(lines) <= 1, lines


def test_a_control_character_in_a_correlation_id_cannot_break_the_listing(harness: QueueHarness) -> None:
    assert harness.process(message(count=BIG, correlationId="a\x01b"), message_id="m-ctl") == "rejected"
    only_result(harness)
    names = [blob.name for blob in harness.container.list_blobs()] if harness.container.exists() else []
    assert names == []


@pytest.mark.parametrize("size", [129, 60_000])
def test_an_oversized_correlation_id_still_gets_one_rejected_result(harness: QueueHarness, size: int) -> None:
    state = harness.process(message(count=1, correlationId="c" * size), message_id=f"m-long-{size}")
    result = only_result(harness)
    assert state == "rejected"
    assert result["messageId"] == f"m-long-{size}"
    assert len(result.get("correlationId") or "") <= 128
    assert "correlationId" in result["error"]["errors"]


@pytest.mark.parametrize("correlation_id", ["4711", "ticket-4711", "a.b_c:d-e", "0" * 128,
                                            "6f1c0a5e-9a0b-4c1d-8e2f-3a4b5c6d7e8f"])
def test_documented_correlation_ids_are_accepted_and_echoed(harness: QueueHarness, correlation_id: str) -> None:
    assert harness.process(message(count=1, correlationId=correlation_id)) == "completed"
    assert only_result(harness)["correlationId"] == correlation_id


@pytest.mark.parametrize("reason", ["line\nbreak", "tab\there", "nul\x00", "bidi\u202e", "x" * 501])
def test_reasons_with_control_characters_or_too_long_are_rejected(harness: QueueHarness, reason: str) -> None:
    assert harness.process(message(count=1, action="add", reason=reason, correlationId="r-1")) == "rejected"
    result = only_result(harness)
    assert "reason" in result["error"]["errors"] and result["correlationId"] == "r-1"


def test_a_result_whose_blob_cannot_be_written_falls_back_to_an_error_result(
    azurite: Azurite, acs: AcsEmulator
) -> None:
    # An invalid container name: Azurite refuses both the create and the upload with 400.
    with queue_harness(azurite, acs, container="Not_A_Valid_Container") as harness:
        state = harness.process(message(count=BIG, correlationId="c-noblob"), message_id="m-noblob")
        result = only_result(harness)
    assert state == "completed"
    assert result["status"] == "completed" and result["messageId"] == "m-noblob"
    assert result["correlationId"] == "c-noblob"
    assert "results" not in result and "resultsBlob" not in result
    assert result["error"]["code"] == "ResultsNotDelivered"
    assert result["summary"]["total"] == BIG


def test_a_rejection_too_large_for_a_message_is_cut_to_one_that_fits(harness: QueueHarness) -> None:
    # ~4,000 unknown fields: the list of errors alone is larger than a queue message.
    fields = {f"unknown{index:05d}{'x' * 40}": 1 for index in range(4_000)}
    state = harness.process(message(count=1, correlationId="c-many", **fields), message_id="m-many")
    result = only_result(harness)
    assert state == "rejected" and result["messageId"] == "m-many" and result["correlationId"] == "c-many"


def test_a_result_the_queue_refuses_falls_back_to_an_error_result(
    harness: QueueHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the blob threshold lifted, a ~100 KB result goes to the queue as it is: Azurite, like
    # Azure, answers 413 RequestBodyTooLarge, and the message must still get its one result.
    monkeypatch.setattr(queued_requests, "MAX_RESULT_MESSAGE_BYTES", 10_000_000)
    state = harness.process(message(count=BIG * 2, correlationId="c-413"), message_id="m-413")
    result = only_result(harness)
    assert state == "completed" and result["messageId"] == "m-413" and result["correlationId"] == "c-413"
    assert "results" not in result and result["error"]["code"] == "ResultsNotDelivered"
    assert result["summary"]["total"] == BIG * 2
