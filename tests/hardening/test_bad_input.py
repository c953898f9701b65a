"""Generated bad input against every HTTP endpoint, over real HTTP through the local host
(and in-process where it is cheaper): never a 5xx, every 4xx the documented problem+json,
never the ACS key in an answer. The suite-wide log scan (tests/conftest.py) covers the logs.

Answers from the host itself (401 no key, 404 no route, 413 over the host's cap) have an
empty body, as in Azure; answers from the functions carry `x-trace-id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, unquote

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from optouts.domain.phone import SEPARATORS as _GATEWAY_SEPARATORS

from ..conftest import OTHER_SENDER, SENDER
from .gateway import Answer, RawClient, assert_no_server_error, assert_problem, running_gateway

MAX_BODY_BYTES = 16_384
MAX_NUMBERS = 40
BULK_PATHS = ("/api/optouts/remove", "/api/optouts/add", "/api/optouts/check")
HOST_ONLY_STATUSES = {401, 404, 413}
#: The total this module must generate; the last test checks it was reached.
MIN_GENERATED_REQUESTS = 1_000

FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

# -- strategies ---------------------------------------------------------------------

UNICODE_DIGITS = "０１２３４５６７８９٠١٢٣٤٥٦٧٨٩۰۴۵०१२९০৯๑๙𝟎𝟏𝟗𝟘𝟡"
LOOK_ALIKES = "OoIlL|SBZ①②²³₁ⅠⅡ＋﹢➕‐−\u200b\u200e\u202e\ufeff\u0660\u06f0\u2007"

SEPARATORS = "".join(sorted(_GATEWAY_SEPARATORS))  # what the gateway itself treats as separators

phone_like = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["", "+", "00", "+1", "+44", "＋", " +"]),
    st.text(alphabet=st.sampled_from("0123456789" + UNICODE_DIGITS + LOOK_ALIKES + SEPARATORS), max_size=24),
)
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(json_scalars,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
number_items = st.one_of(phone_like, phone_like, st.sampled_from(["+14255550100", "(425) 555-0101", "0044 20 7946 0958"]),
                         json_scalars, st.lists(phone_like, max_size=2))


@st.composite
def request_objects(draw: st.DrawFn) -> dict:
    """A JSON object near the documented shape, every field possibly wrong."""
    body: dict = {}
    if draw(st.booleans()) or draw(st.booleans()):
        body["phoneNumbers"] = draw(st.lists(number_items, max_size=12) | json_values
                                    | st.lists(st.just("+14255550100"), min_size=MAX_NUMBERS + 1, max_size=MAX_NUMBERS + 3))
    if draw(st.booleans()):
        body["sender"] = draw(st.sampled_from([SENDER, OTHER_SENDER, "+1 (800) 555-0100", "+18005559999", "+１８００５５５０１００"])
                              | json_values)
    if draw(st.booleans()):
        body["region"] = draw(st.sampled_from(["US", "gb", "XX", "", "U S", "ＵＳ"]) | json_values)
    if draw(st.booleans()):
        body["reason"] = draw(st.text(max_size=600) | json_values)
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.text(max_size=12))] = draw(json_values)
    return body


def deep_nesting(depth: int, inside_field: bool) -> bytes:
    nested = b"[" * depth + b"]" * depth
    return b'{"phoneNumbers":' + nested + b"}" if inside_field else nested


bad_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda prefix, junk: prefix + junk, st.sampled_from([b'{"phoneNumbers":["', b"\xef\xbb\xbf{", b"{"]),
              st.binary(max_size=64)),  # mostly invalid UTF-8 after a valid start
    st.builds(deep_nesting, st.integers(2, 60_000), st.booleans()),
    st.builds(lambda size: b'{"phoneNumbers":["' + b"1" * size + b'"]}', st.integers(MAX_BODY_BYTES - 20, 3 * MAX_BODY_BYTES)),
    st.builds(lambda digits: b'{"phoneNumbers":[' + b"9" * digits + b"]}", st.integers(1, 6_000)),
    st.sampled_from([b"", b"   ", b"null", b"[]", b"{}", b'"x"', b"NaN", b'{"phoneNumbers":["\\ud800"]}',
                     b'{"\\udfff":1}', b'{"phoneNumbers":["+1425555\\u0000"]}']),
    json_values.map(lambda value: json.dumps(value).encode()),
)
content_types = st.one_of(
    st.sampled_from(["application/json", "text/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                     "application/vnd.example+json", "application/json;;;", "text/plain", "application/xml",
                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "*/*", ""]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
route_values = st.one_of(
    phone_like,
    st.text(max_size=40),
    st.sampled_from(["remove", "add", "check", "..", ".", "%00", "a/b", "%2F", "+14255550100", "+1 425 555 0100",
                     "1" * 200, "\ud800"]),
)
query_texts = st.text(max_size=12) | st.sampled_from(["US", "gb", SENDER, "+18005559999", "", "%FF"])

# -- the gateway ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER, OTHER_SENDER}) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(azurite: Azurite, acs: AcsEmulator) -> Iterator[LocalHost]:
    with running_gateway(acs.connection_string, azurite.connection_string,
                         OPTOUT_MAX_BODY_BYTES=str(MAX_BODY_BYTES), OPTOUT_MAX_NUMBERS=str(MAX_NUMBERS),
                         OPTOUT_TIME_BUDGET_SECONDS="20") as host:
        yield host


@pytest.fixture(scope="module")
def http(gateway: LocalHost) -> Iterator[RawClient]:
    client = RawClient(gateway.base_url)
    yield client
    client.close()


class Counter:
    generated = 0


def judge(answer: Answer, acs: AcsEmulator) -> None:
    """What every answer must satisfy, whatever was asked."""
    Counter.generated += 1
    assert_no_server_error(answer)
    assert acs.access_key.encode() not in answer.body
    if answer.status >= 400 and not answer.body and "x-trace-id" not in answer.headers:  # the host's own answer
        assert answer.status in HOST_ONLY_STATUSES, answer.status
    elif answer.status >= 400:
        assert_problem(answer)
    else:
        assert answer.status == 200 and answer.content_type == "application/json", answer.status
        if answer.body:  # HEAD answers carry none
            answer.json()


def only_digits_and_separators(text: str) -> bool:
    stripped = text.strip()
    rest = stripped[1:] if stripped.startswith("+") else stripped
    return all(c.isdecimal() or c in SEPARATORS for c in rest)


def judge_bulk_results(payload: dict, answer: Answer) -> None:
    """A 200 answers every input, in order; a letter or look-alike is never sent to ACS."""
    results = answer.json()["results"]
    numbers = payload["phoneNumbers"]
    assert [r["input"] for r in results] == numbers
    for number, result in zip(numbers, results, strict=True):
        if not only_digits_and_separators(number):
            assert result["status"] == "invalid", result
        if result["status"] == "succeeded":
            assert result["phoneNumber"].startswith("+") and result["phoneNumber"][1:].isascii()


# -- over real HTTP -----------------------------------------------------------------


@settings(FUZZ, max_examples=500)
@given(path=st.sampled_from(BULK_PATHS), payload=request_objects())
def test_request_objects_never_fail_the_gateway(http: RawClient, acs: AcsEmulator, path: str, payload: dict) -> None:
    answer = http.post_json(path, payload)
    judge(answer, acs)
    if answer.status == 200:
        judge_bulk_results(payload, answer)


@settings(FUZZ, max_examples=300)
@given(path=st.sampled_from(BULK_PATHS), body=bad_bodies, content_type=content_types)
def test_bad_bodies_and_content_types_get_documented_4xx(
    http: RawClient, acs: AcsEmulator, path: str, body: bytes, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = http.request("POST", path, body, headers)
    judge(answer, acs)
    media_type = content_type.split(";")[0].strip().lower()
    if media_type and not (media_type in ("application/json", "text/json") or media_type.endswith("+json")):
        assert_problem(answer, 415, "UnsupportedMediaType")
    elif len(body) > MAX_BODY_BYTES:
        assert_problem(answer, 413, "BodyTooLarge")


@settings(FUZZ, max_examples=350)
@given(value=route_values, sender=st.none() | query_texts, region=st.none() | query_texts,
       raw_segment=st.booleans())
def test_odd_route_parameters_for_single_check(
    http: RawClient, acs: AcsEmulator, value: str, sender: str | None, region: str | None, raw_segment: bool
) -> None:
    # Percent-encoded (any text) or as typed where HTTP allows it.
    raw = value.encode("utf-8", "surrogatepass")  # lone surrogates travel as their (invalid) UTF-8 bytes
    segment = quote(raw, safe="+()-.") if not raw_segment or not value.isascii() else quote(raw, safe="+()/-.%")
    query = "&".join(f"{name}={quote(text, safe='%')}" for name, text in (("sender", sender), ("region", region))
                     if text is not None)
    answer = http.request("GET", f"/api/optouts/{segment}" + (f"?{query}" if query else ""))
    judge(answer, acs)
    if answer.status == 200:
        body = answer.json()
        assert isinstance(body["optedOut"], bool)
        assert only_digits_and_separators(unquote(segment))


@settings(FUZZ, max_examples=80)
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       path=st.sampled_from(["/api/health", "/api/openapi.json", *BULK_PATHS, "/api/optouts", "/api/", "/api/nope"]),
       query=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=30))
def test_other_methods_and_paths(http: RawClient, acs: AcsEmulator, method: str, path: str, query: str) -> None:
    answer = http.request(method, f"{path}?{query}", b"{}" if method in ("POST", "PUT", "PATCH") else None,
                          {"content-type": "application/json"})
    judge(answer, acs)


def test_body_over_the_hosts_cap_is_refused_unread(http: RawClient, acs: AcsEmulator) -> None:
    # Announces 101 MB and sends nothing: the host must answer from the header alone.
    answer = http.request("POST", BULK_PATHS[0], None, {"content-type": "application/json",
                                                         "content-length": str(101 * 1024 * 1024)})
    judge(answer, acs)
    assert answer.status == 413


# -- in-process: the registered functions called as the host calls them ---------------------


@settings(FUZZ, max_examples=400)
@given(name=st.sampled_from(["RemoveOptOuts", "AddOptOuts", "CheckOptOuts"]), body=bad_bodies | request_objects().map(
    lambda value: json.dumps(value).encode()))
def test_functions_in_process(gateway: LocalHost, acs: AcsEmulator, name: str, body: bytes) -> None:
    function = next(f for f in gateway.http_functions if f.name == name)
    request = func.HttpRequest(method="POST", url=f"http://127.0.0.1/api/{function.route.template}",
                               headers={"content-type": "application/json"}, params={}, route_params={}, body=body)
    response = function.user_function(request)
    judge(Answer(response.status_code, {"x-trace-id": response.headers.get("x-trace-id", ""),
                                        "content-type": response.mimetype}, response.get_body()), acs)


def test_lone_surrogates_are_refused_like_invalid_utf8(http: RawClient, acs: AcsEmulator) -> None:
    """Regression: JSON may escape a lone surrogate, which no UTF-8 answer can echo (was a 500)."""
    for body in (b'{"phoneNumbers":["\\ud800"]}', b'{"\\udfff":1}', b'{"phoneNumbers":["+1425555010\\uDC00"]}'):
        answer = http.request("POST", BULK_PATHS[2], body, {"content-type": "application/json"})
        judge(answer, acs)
        assert_problem(answer, 400, "InvalidEncoding")
    # A proper surrogate pair is a character like any other (here an emoji, so not a number).
    answer = http.request("POST", BULK_PATHS[2], b'{"phoneNumbers":["\\ud83d\\ude00"]}',
                          {"content-type": "application/json"})
    judge(answer, acs)
    assert answer.json()["results"][0]["status"] == "invalid"


def test_enough_requests_were_generated() -> None:
    """Runs last in this module: the property tests above must have sent their share."""
    assert Counter.generated >= MIN_GENERATED_REQUESTS, Counter.generated
    print(f"generated requests: {Counter.generated}")
