"""Generated queue messages through the processor on real storage (Azurite) and the ACS
emulator: whatever a message holds, it ends in exactly one result message, named by its
messageId, and nothing escapes as an exception."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite

from ..conftest import SENDER
from .queue_harness import QueueHarness, queue_harness

EXAMPLES = 60

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x3000), min_size=100, max_size=3_000),
    st.sampled_from(["../evil-container/x", "a\r\nINFO forged", "a\x01b", "x" * 129, "%2e%2e/x", "",
                     "  ", "\u2028", "\ud800", "con", "a/b", "a?b#c", "<x>&amp;", '"', "\\"]),
)
numbers = st.one_of(
    st.lists(st.sampled_from(["+14255550100", "+14255550101", "(425) 555-0102", "425.555.0103", "12", "+", "",
                              "+1425555010\x00", "+44 20 7946 0958"]), max_size=8),
    st.lists(hostile_text, max_size=4),
    st.builds(lambda n: [f"+1425555{i:04d}" for i in range(n)], st.integers(0, 1_200)),
    hostile_text, st.integers(), st.none(),
)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
                           max_leaves=8)
fields = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.sampled_from(["add", "remove", "check", " CHECK ", "delete"]), hostile_text, json_values),
        "phoneNumbers": numbers,
        "sender": st.one_of(st.sampled_from([SENDER, "+1 (800) 555-0100", "+18005559999"]), hostile_text),
        "region": st.one_of(st.sampled_from(["US", "gb", "XX"]), hostile_text),
        "reason": st.one_of(st.sampled_from(["ticket 4711", "ü ok", "r" * 500]), hostile_text, json_values),
        "correlationId": st.one_of(st.sampled_from(["4711", "ticket-4711", "a.b:c_d"]), hostile_text, json_values),
        "traceparent": st.one_of(st.just("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                                 hostile_text, json_values),
    },
)
extra_fields = st.dictionaries(hostile_text, json_values, max_size=3)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    payload: Any = {**draw(extra_fields), **draw(fields)} if draw(st.booleans()) else draw(fields)
    if draw(st.integers(0, 9)) == 0:
        payload = draw(json_values)
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return base64.b64encode(data)
    if shape == 1:
        return draw(st.binary(max_size=200))
    if shape == 2:
        return data[: draw(st.integers(0, len(data)))]
    return data


@pytest.fixture(scope="module")
def harness(azurite: Azurite) -> Iterator[QueueHarness]:
    with AcsEmulator(owned_senders={SENDER}) as acs, queue_harness(azurite, acs) as opened:
        yield opened


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(body=bodies(), message_id=st.one_of(st.uuids().map(str), hostile_text.filter(bool)))
def test_every_message_ends_in_exactly_one_result(harness: QueueHarness, body: bytes, message_id: str) -> None:
    state = harness.process(body, message_id=message_id)
    assert state in ("completed", "rejected"), state
    results = harness.take_results()
    assert [result["messageId"] for result in results] == [message_id], results
    result = results[0]
    assert result["status"] == state
    correlation_id = result.get("correlationId")
    assert correlation_id is None or (len(correlation_id) <= 128 and correlation_id.isprintable()), correlation_id


def test_the_fuzz_reached_both_outcomes(harness: QueueHarness) -> None:
    """The generated messages above are not all refused: a valid one completes."""
    body = json.dumps({"action": "check", "phoneNumbers": ["+14255550100"], "correlationId": str(uuid.uuid4())})
    assert harness.process(body) == "completed"
    assert len(harness.take_results()) == 1
