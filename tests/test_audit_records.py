"""The audit trail's records and keys, in-process and without Storage: the journal's JSON formats
(docs/audit.md), history entities and the API's shape of them, the keys, the index messages and
batches, and a disabled trail. Milliseconds each; tests/test_audit.py covers the same records
written to and read back from Azurite."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from azure.core.exceptions import HttpResponseError

from optouts.audit import trail as audit
from optouts.audit.callers import AuditContext
from optouts.audit.index import MAX_MESSAGE_BYTES, AuditIndexer, IndexMessage, _batches, parse_index_message
from optouts.audit.trail import (
    AuditReceipt,
    AuditStorage,
    AuditTrail,
    HistoryRecord,
    InvalidContinuationToken,
    NumberOutcome,
    OperationIntent,
    OperationOutcome,
    describe_error,
    history_records,
)
from optouts.config import SettingsError
from optouts.domain.problems import Problem

SENDER = "+18005550100"
NUMBER = "+14255550142"
OPERATION_ID = "0123456789abcdef0123456789abcdef"
ACCEPTED = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
COMPLETED = datetime(2026, 1, 2, 3, 4, 6, 123456, tzinfo=UTC)
CONTEXT = AuditContext("http", "crm-sync@contoso.com", "corr-1", caller_id="id-1", verified=True,
                       claimed_caller="claimed", claimed_caller_id="claimed-id", trace_id="trace-1")


def intent(**changes: Any) -> OperationIntent:
    fields: dict[str, Any] = {
        "operation_id": OPERATION_ID, "accepted_at": ACCEPTED, "action": "remove", "sender": SENDER,
        "numbers": (NUMBER, "+14255550143"), "context": CONTEXT, "reason": "ticket 4711", "invalid_inputs": 2,
        "provider": "acs",
    }
    fields.update(changes)
    return OperationIntent(**fields)


def unused_storage() -> AuditStorage:
    def no_storage() -> Any:
        raise AssertionError("this test must not touch Storage")

    return AuditStorage(container=no_storage, table=no_storage, queue=no_storage)


# -- keys -------------------------------------------------------------------------------------------

def test_a_numbers_hash_is_the_sha256_of_sender_and_number() -> None:
    assert audit.number_hash(SENDER, NUMBER) == hashlib.sha256(f"{SENDER}|{NUMBER}".encode()).hexdigest()


@pytest.mark.parametrize(("hashed", "partition"), [
    ("0000000f" + "1" * 56, "15"),  # only the first 8 hex digits count
    ("00000010" + "f" * 56, "00"),
    ("ffffffff" + "0" * 56, "15"),
    ("00000001" + "0" * 56, "01"),  # two digits, so partitions sort as numbers
])
def test_the_partition_is_the_hash_bucket_in_two_digits(hashed: str, partition: str) -> None:
    assert audit.partition_for(hashed) == partition


def test_inverted_ticks_are_dotnet_ticks_counted_down_in_19_digits() -> None:
    assert audit.inverted_ticks(datetime(1, 1, 1, tzinfo=UTC)) == "3155378975999999999"
    assert audit.inverted_ticks(ACCEPTED) == "2516349777549999939"
    # One microsecond is ten ticks; later instants sort first.
    assert audit.inverted_ticks(ACCEPTED + timedelta(microseconds=1)) == "2516349777549999929"


def test_history_keys_join_the_hash_the_inverted_ticks_and_the_operation() -> None:
    hashed = audit.number_hash(SENDER, NUMBER)
    assert audit.history_keys(SENDER, NUMBER, ACCEPTED, OPERATION_ID) == (
        "14", f"{hashed}_2516349777549999939_{OPERATION_ID}")


def test_operation_ids_are_fresh_32_hex_digits() -> None:
    first, second = audit.new_operation_id(), audit.new_operation_id()
    assert audit.OPERATION_ID_PATTERN.fullmatch(first) and len(first) == 32 and first != second


def test_blob_names_and_index_messages() -> None:
    assert audit.blob_name(OPERATION_ID, audit.INTENT_BLOB) == f"{OPERATION_ID}/intent.json"
    assert (audit.OUTCOME_BLOB, audit.INDEX_BLOB) == ("outcome.json", "index.json")
    assert audit.index_message(OPERATION_ID, "reconcile") == {"version": 1, "operationId": OPERATION_ID,
                                                              "kind": "reconcile"}


def test_times_are_utc_iso_with_microseconds_and_z() -> None:
    assert audit._iso(ACCEPTED) == "2026-01-02T03:04:05.000006Z"
    assert audit._iso(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-01-02T03:04:05.000000Z")
    assert audit._parse_time("2026-01-02T03:04:05.000006Z") == ACCEPTED
    parsed = audit._parse_time("2026-01-02T05:04:05.000006+02:00")
    assert parsed == ACCEPTED and parsed.utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        audit._parse_time(1_767_323_045)


# -- the journal ------------------------------------------------------------------------------------

def test_an_intent_is_written_in_the_documented_format_and_reads_back_the_same() -> None:
    written = intent().to_json()
    assert written == {
        "version": 1, "operationId": OPERATION_ID, "acceptedAt": "2026-01-02T03:04:05.000006Z",
        "action": "remove", "sender": SENDER, "channel": "http", "caller": "crm-sync@contoso.com",
        "callerId": "id-1", "callerVerified": True, "claimedCaller": "claimed", "claimedCallerId": "claimed-id",
        "correlationId": "corr-1", "traceId": "trace-1", "reason": "ticket 4711", "invalidInputs": 2,
        "numbers": [NUMBER, "+14255550143"], "provider": "acs", "endUser": False,
    }
    assert OperationIntent.from_json(orjson.loads(orjson.dumps(written))) == intent()


def test_an_intent_written_before_later_fields_existed_reads_with_their_defaults() -> None:
    written = {"operationId": OPERATION_ID, "acceptedAt": "2026-01-02T03:04:05.000006Z", "action": "add",
               "sender": SENDER, "channel": "queue", "caller": "optout-requests", "correlationId": "c-1",
               "numbers": [NUMBER], "invalidInputs": None, "provider": ""}
    read = OperationIntent.from_json(written)
    assert read == OperationIntent(OPERATION_ID, ACCEPTED, "add", SENDER, (NUMBER,),
                                   AuditContext("queue", "optout-requests", "c-1"), None, 0, None)
    assert read.context.verified is False


@pytest.mark.parametrize("numbers", [NUMBER, [NUMBER, 5], None])
def test_an_intent_whose_numbers_are_not_strings_is_refused(numbers: object) -> None:
    with pytest.raises(ValueError, match="numbers"):
        OperationIntent.from_json({**intent().to_json(), "numbers": numbers})


def test_an_outcome_counts_every_status_and_is_written_compact() -> None:
    outcome = OperationOutcome(COMPLETED, (
        NumberOutcome("succeeded", 200, None, True),
        NumberOutcome("failed", 503, "AcsUnavailable"),
        NumberOutcome("succeeded", 200, details={"endUserOptedOut": True}),
    ))
    assert outcome.counts() == {"succeeded": 2, "invalid": 0, "failed": 1, "unknown": 0}
    assert list(outcome.counts()) == list(audit.OUTCOMES)
    assert outcome.to_json(OPERATION_ID) == {
        "version": 1, "operationId": OPERATION_ID, "completedAt": "2026-01-02T03:04:06.123456Z",
        "errorCode": None, "counts": {"succeeded": 2, "invalid": 0, "failed": 1, "unknown": 0},
        "outcomes": [["succeeded", 200, None, True, None], ["failed", 503, "AcsUnavailable", None, None],
                     ["succeeded", 200, None, None, {"endUserOptedOut": True}]],
    }


def test_an_outcome_reads_back_the_same_and_old_four_item_rows_too() -> None:
    outcome = OperationOutcome(COMPLETED, (NumberOutcome("failed", 429, "AcsThrottled", None, {"a": 1}),
                                           NumberOutcome("succeeded", 200, None, False)), "SomeCode")
    written = orjson.loads(orjson.dumps(outcome.to_json(OPERATION_ID)))
    assert OperationOutcome.from_json(written, 2) == outcome
    old = {"completedAt": "2026-01-02T03:04:06.123456Z",
           "outcomes": [["succeeded", "200", None, True], ["nonsense", None, "X", None]]}
    assert OperationOutcome.from_json(old, 2) == OperationOutcome(COMPLETED, (
        NumberOutcome("succeeded", 200, None, True, None), NumberOutcome("unknown", None, "X", None, None)))


@pytest.mark.parametrize(("outcomes", "expected"), [
    ([["succeeded", 200, None, None]], 2),  # fewer rows than the intent has numbers
    ({"0": ["succeeded", 200, None, None]}, 1),  # not a list
    ([["succeeded", 200, None]], 1),  # three items
    ([["succeeded", 200, None, None, None, None]], 1),  # six items
    (["succeeded"], 1),  # a row that is not a list
])
def test_an_outcome_that_does_not_fit_its_intent_is_refused(outcomes: object, expected: int) -> None:
    with pytest.raises(ValueError):
        OperationOutcome.from_json({"completedAt": "2026-01-02T03:04:06.123456Z", "outcomes": outcomes}, expected)


@pytest.mark.parametrize(("stored", "read"), [
    ('{"optedOutTimestamp": "2026-01-01"}', {"optedOutTimestamp": "2026-01-01"}),
    ({"endUserOptedOut": True}, {"endUserOptedOut": True}),
    ("not json", None),
    ("{}", None),
    ({}, None),
    ("[1]", None),
    (5, None),
    (None, None),
])
def test_provider_details_are_an_object_or_nothing(stored: object, read: object) -> None:
    assert audit._details(stored) == read


def test_receipts() -> None:
    assert AuditReceipt("disabled", disabled_reason="OPTOUT_AUDIT_WRITES is false").to_dict() == {
        "status": "disabled", "reason": "OPTOUT_AUDIT_WRITES is false"}
    assert AuditReceipt("accepted", OPERATION_ID, ACCEPTED, outcome_recorded=True).to_dict() == {
        "status": "accepted", "operationId": OPERATION_ID, "acceptedAt": "2026-01-02T03:04:05.000006Z",
        "outcomeRecorded": True}
    assert AuditReceipt("accepted", OPERATION_ID, ACCEPTED).to_dict()["outcomeRecorded"] is False


# -- history ----------------------------------------------------------------------------------------

def record(**changes: Any) -> HistoryRecord:
    fields: dict[str, Any] = {
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "operation_id": OPERATION_ID,
        "action": "add", "sender": SENDER, "phone_number": NUMBER, "outcome": "failed", "upstream_status": 503,
        "error_code": "AcsUnavailable", "opted_out": None, "caller": "crm", "caller_id": None,
        "caller_verified": False, "claimed_caller": "someone", "claimed_caller_id": None, "channel": "http",
        "correlation_id": "corr-1", "trace_id": "trace-1", "reason": None, "provider": "aws",
        "details": {"endUserOptedOut": True},
    }
    fields.update(changes)
    return HistoryRecord(**fields)


def test_a_history_entity_has_the_keys_and_no_null_properties() -> None:
    entity = record().to_entity()
    partition, row = audit.history_keys(SENDER, NUMBER, record().occurred_at, OPERATION_ID)
    assert entity == {
        "PartitionKey": partition, "RowKey": row, "OccurredAt": record().occurred_at, "OperationId": OPERATION_ID,
        "Action": "add", "Sender": SENDER, "PhoneNumber": NUMBER, "Outcome": "failed", "UpstreamStatus": 503,
        "ErrorCode": "AcsUnavailable", "Caller": "crm", "CallerVerified": False, "ClaimedCaller": "someone",
        "Channel": "http", "CorrelationId": "corr-1", "TraceId": "trace-1", "Provider": "aws",
        "Details": '{"endUserOptedOut":true}',
    }
    assert "Details" not in record(details={}).to_entity()


def test_a_history_entity_reads_back_as_the_same_record() -> None:
    assert HistoryRecord.from_entity(record().to_entity()) == record()
    entity = record(opted_out=True, caller_verified=True, caller_id="id", details=None).to_entity()
    assert HistoryRecord.from_entity(entity) == record(opted_out=True, caller_verified=True, caller_id="id",
                                                       details=None)
    # Table Storage answers in UTC, whatever offset the datetime was written with.
    shifted = {**entity, "OccurredAt": datetime(2026, 1, 2, 5, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))}
    assert HistoryRecord.from_entity(shifted).occurred_at.utcoffset() == timedelta(0)


def test_an_entity_missing_properties_reads_with_defaults() -> None:
    read = HistoryRecord.from_entity({"UpstreamStatus": "502", "Provider": "", "Details": "{}"})
    assert read == HistoryRecord(datetime(1, 1, 1, tzinfo=UTC), "", "", "", "", "unknown", 502, None, None, "",
                                 None, False, None, None, "", "", None, None, None, None)
    assert HistoryRecord.from_entity({"OccurredAt": "2026-01-02"}).occurred_at == datetime(1, 1, 1, tzinfo=UTC)


def test_a_history_record_in_the_api_has_every_field() -> None:
    assert record().to_dict() == {
        "occurredAt": "2026-01-02T03:04:05.123Z", "operationId": OPERATION_ID, "action": "add", "sender": SENDER,
        "phoneNumber": NUMBER, "outcome": "failed", "upstreamStatus": 503, "errorCode": "AcsUnavailable",
        "optedOut": None, "caller": "crm", "callerId": None, "callerVerified": False, "claimedCaller": "someone",
        "claimedCallerId": None, "channel": "http", "correlationId": "corr-1", "traceId": "trace-1",
        "reason": None, "provider": "aws", "details": {"endUserOptedOut": True}, "endUser": False,
    }
    assert record(details=None).to_dict()["details"] is None


def test_history_records_are_one_per_number_with_the_intents_context() -> None:
    outcome = OperationOutcome(COMPLETED, (NumberOutcome("succeeded", 200, None, True, {"a": 1}),
                                           NumberOutcome("failed", 503, "AcsUnavailable")))
    first, second = history_records(intent(), outcome)
    assert first == HistoryRecord(ACCEPTED, OPERATION_ID, "remove", SENDER, NUMBER, "succeeded", 200, None, True,
                                  "crm-sync@contoso.com", "id-1", True, "claimed", "claimed-id", "http", "corr-1",
                                  "trace-1", "ticket 4711", "acs", {"a": 1})
    assert (second.phone_number, second.outcome, second.upstream_status, second.error_code) == (
        "+14255550143", "failed", 503, "AcsUnavailable")


def test_history_records_without_an_outcome_are_unknown_and_a_short_outcome_is_not_an_error() -> None:
    unknown = history_records(intent(), None)
    assert [(r.phone_number, r.outcome, r.upstream_status) for r in unknown] == [
        (NUMBER, "unknown", None), ("+14255550143", "unknown", None)]
    short = OperationOutcome(COMPLETED, (NumberOutcome("succeeded", 200),))
    assert [r.phone_number for r in history_records(intent(), short)] == [NUMBER]


# -- errors and a disabled trail --------------------------------------------------------------------

def test_errors_are_described_without_the_sdks_text() -> None:
    assert describe_error(SettingsError("OPTOUT_AUDIT_TABLE", "is not a table name")) == (
        "App setting OPTOUT_AUDIT_TABLE: is not a table name")
    assert describe_error(TimeoutError("the table did not answer in 10 s")) == "the table did not answer in 10 s"
    error = HttpResponseError("https://account.table.core.windows.net/?sig=secret")
    error.status_code, error.error_code = 503, "ServerBusy"  # type: ignore[attr-defined]
    assert describe_error(error) == "HttpResponseError HTTP 503 ServerBusy"
    error.error_code = None  # type: ignore[attr-defined]
    assert describe_error(error) == "HttpResponseError HTTP 503"
    assert describe_error(ValueError("+14255550142 is not a number")) == "ValueError"


def test_the_unavailable_problem() -> None:
    problem = audit.audit_unavailable_problem("try later")
    assert (problem.status, problem.code, problem.title, problem.detail, problem.retry_after) == (
        503, "AuditUnavailable", "Audit trail unavailable", "try later", 30)


def test_a_trail_without_storage_records_nothing_and_says_why() -> None:
    trail = AuditTrail(None)
    assert (trail.enabled, trail.disabled_reason) == (False, "no storage configured")
    assert trail.begin("add", SENDER, [NUMBER], CONTEXT, None) is None
    assert trail.finish(None, {}) == AuditReceipt("disabled", disabled_reason="no storage configured")
    trail.fail(None, "AcsUnavailable")  # nothing to record, and no error
    for read in (lambda: trail.history(SENDER, NUMBER), lambda: trail.operation(OPERATION_ID)):
        with pytest.raises(Problem) as raised:
            read()
        assert (raised.value.status, raised.value.code, raised.value.retry_after) == (503, "AuditDisabled", 60)
        assert raised.value.detail == "the audit trail is disabled: no storage configured"
    trail.close()
    turned_off = AuditTrail(unused_storage(), disabled_reason="OPTOUT_AUDIT_WRITES is false")
    assert not turned_off.enabled and turned_off.begin("add", SENDER, [NUMBER], CONTEXT, None) is None
    assert AuditTrail(unused_storage()).enabled


def test_checks_are_audited_only_when_asked() -> None:
    assert [AuditTrail(None).audits(action) for action in ("add", "remove", "check")] == [True, True, False]
    assert AuditTrail(None, include_checks=True).audits("check")


@pytest.mark.parametrize("token", ["nonsense", "2516069451093398339_" + "A" * 32, "2516069451093398339_" + "a" * 31])
def test_a_continuation_token_this_api_did_not_issue_is_refused_before_storage_is_asked(token: str) -> None:
    with pytest.raises(InvalidContinuationToken):
        AuditTrail(unused_storage()).history(SENDER, NUMBER, continuation_token=token)


# -- the indexer's input ----------------------------------------------------------------------------

def test_index_messages_are_parsed_strictly() -> None:
    assert parse_index_message(b'{"operationId": "' + OPERATION_ID.encode() + b'", "kind": "reconcile"}') == (
        IndexMessage(OPERATION_ID, "reconcile"))
    at_the_limit = b'{"operationId": "' + OPERATION_ID.encode() + b'", "kind": "outcome"}'
    at_the_limit += b" " * (MAX_MESSAGE_BYTES - len(at_the_limit))
    assert parse_index_message(at_the_limit) == IndexMessage(OPERATION_ID, "outcome")
    assert parse_index_message(at_the_limit + b" ") is None
    for body in (b"", b"[]", b"not json", b'{"operationId": "' + OPERATION_ID.encode() + b'"}',
                 b'{"operationId": "' + OPERATION_ID.upper().encode() + b'", "kind": "outcome"}',
                 b'{"operationId": 5, "kind": "outcome"}', b'{"kind": "outcome"}'):
        assert parse_index_message(body) is None, body


def test_garbage_is_ignored_without_touching_storage() -> None:
    indexer = AuditIndexer(unused_storage(), reconcile_delay=1)
    try:
        assert indexer.process(b"garbage", dequeue_count=5, max_dequeue_count=5) == "ignored"
    finally:
        indexer.close()


def test_entities_are_batched_by_partition_in_transactions_of_at_most_100() -> None:
    entities = [{"PartitionKey": "03", "RowKey": f"a{n:03d}"} for n in range(250)]
    entities += [{"PartitionKey": "11", "RowKey": f"b{n}"} for n in range(3)]
    entities.insert(7, {"PartitionKey": "11", "RowKey": "b-first"})
    batches = list(_batches(iter(entities)))
    assert [len(batch) for batch in batches] == [100, 100, 50, 4]
    assert all(len({e["PartitionKey"] for e in batch}) == 1 for batch in batches)
    assert sorted(e["RowKey"] for batch in batches for e in batch) == sorted(e["RowKey"] for e in entities)
    assert [e["RowKey"] for e in batches[3]] == ["b-first", "b0", "b1", "b2"]


def test_blob_and_queue_calls_pause_about_a_second_between_their_two_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage's own retry policy ignores azure-core's backoff options (its default pauses are 15 s
    and more): a storage account that is down must refuse a change in seconds, not in 40 s."""
    from devtools.azurite import ACCOUNT, ACCOUNT_KEY

    monkeypatch.setenv("AzureWebJobsStorage", f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
                                              f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/{ACCOUNT};"
                                              f"QueueEndpoint=http://127.0.0.1:1/{ACCOUNT};")
    storage = audit.storage_for(container="ops", table="audit", queue="index")
    for name in ("container", "queue"):
        policy = storage._client(name)._config.retry_policy
        assert (policy.total_retries, policy.initial_backoff, policy.increment_base, policy.random_jitter_range) == (
            2, 0.2, 1, 0.2), name
    storage.close()
