"""A local stand-in for AWS End User Messaging SMS (`pinpoint-sms-voice-v2`) and for STS
`AssumeRoleWithWebIdentity`: a real HTTP server on loopback, spoken to by real boto3.

SMS API: the AWS JSON 1.0 protocol (`POST /`, `Content-Type: application/x-amz-json-1.0`,
`X-Amz-Target: PinpointSMSVoiceV2.<Action>`), SigV4-verified (`sigv4.py`), with the
actions the gateway uses: PutOptedOutNumber, DeleteOptedOutNumber,
DescribeOptedOutNumbers (OptedOutNumbers, Filters, NextToken, MaxResults) and
DescribePhoneNumbers (for a phone number's OptOutListName). Errors carry the service
model's shapes (`__type`, `Message`, `Reason`, `Fields`, `ResourceType`, `ResourceId`).
Per-action quotas answer ThrottlingException (`throttle.py`).

STS: `POST /` with a form body `Action=AssumeRoleWithWebIdentity&...` (unsigned, as
boto3 sends it), answered in XML (`sts.py`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import socket
import socketserver
import string
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import sigv4
from .store import NotFound, OptedOut, PhoneNumber, RemovedTooRecently, Store
from .sts import ACCOUNT_ID, StsStandIn
from .throttle import DEFAULT_RATES, Throttle

SIGNING_NAME = "sms-voice"
TARGET_PREFIX = "PinpointSMSVoiceV2."
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_BODY_BYTES = 1024 * 1024
#: The service model's patterns (botocore/data/pinpoint-sms-voice-v2/2022-03-31/service-2.json).
PHONE_NUMBER_PATTERN = re.compile(r"\+?[1-9][0-9]{1,18}")
LIST_NAME_OR_ARN_PATTERN = re.compile(r"[A-Za-z0-9_:/-]+")
#: What the service accepts as a destination number: E.164.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
DEFAULT_PAGE_SIZE = 100
#: How DescribeOptedOutNumbers answers a named number that is not on the list: left out of the
#: answer (default), or a ResourceNotFoundException naming it. AWS documents neither precisely.
ABSENT_NUMBER_MODES = ("omit", "error")

Answer = tuple[int, dict[str, str], bytes]


class _ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, **members: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.members = code, message, status, members


def _validation(message: str, field: str | None = None, reason: str = "FIELD_VALIDATION_FAILED") -> _ApiError:
    fields = [{"Name": field, "Message": message}] if field else []
    return _ApiError("ValidationException", message, Reason=reason, Fields=fields)


class AwsEmulator:
    """`with AwsEmulator() as aws:` then point boto3 at `aws.endpoint` with `aws.access_key_id`
    / `aws.secret_access_key` (or with credentials from `aws.sts`) in `aws.region`."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        rates: Mapping[str, float] | None = None,
        absent_numbers: str = "omit",
        clock_skew_seconds: float = 300,
        removal_interval_seconds: float | None = None,
        latency_seconds: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if absent_numbers not in ABSENT_NUMBER_MODES:
            raise ValueError(f"absent_numbers must be one of {ABSENT_NUMBER_MODES}")
        self.region = region
        self.access_key_id = access_key_id or "AKIA" + "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        self.secret_access_key = secret_access_key or secrets.token_urlsafe(30)[:40]
        self.absent_numbers = absent_numbers
        self.clock_skew = timedelta(seconds=clock_skew_seconds)
        #: Added to the real clock when checking signatures and credential expiry (tests of
        #: stale requests and expired sessions move the emulator's clock, not the caller's).
        self.clock_offset = timedelta(0)
        self.latency_seconds = latency_seconds
        self.store = Store() if removal_interval_seconds is None else Store(
            removal_interval_seconds=removal_interval_seconds)
        self.store.create_list("Default")
        self.sts = StsStandIn()
        self.throttle = Throttle(DEFAULT_RATES if rates is None else rates)
        #: Actions answered AccessDeniedException, as an IAM policy without them would.
        self.denied_actions: set[str] = set()
        self._injected: dict[str, list[str]] = {}
        self._stats_lock = threading.Lock()
        self._calls: dict[str, list[float]] = {}
        self._throttled: dict[str, int] = {}
        self._auth_failures: dict[str, int] = {}
        self._host, self._port = host, port
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> AwsEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="aws-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if thread is not None:
            thread.join(timeout=10)
        self._server, self._thread = None, None

    def __enter__(self) -> AwsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self.port}"

    def environ(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (SMS API and STS) at this emulator
        with its static key pair."""
        return {
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2": self.endpoint,
            "AWS_ENDPOINT_URL_STS": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def list_arn(self, name: str) -> str:
        return f"arn:aws:sms-voice:{self.region}:{ACCOUNT_ID}:opt-out-list/{name}"

    # -- what tests read and change ------------------------------------------------------------

    def configure_rates(self, rates: Mapping[str, float]) -> None:
        self.throttle.configure(rates)

    def inject(self, action: str, *codes: str) -> None:
        """The next calls of `action` fail with these codes, in order (ThrottlingException,
        InternalServerException, AccessDeniedException, ...)."""
        with self._stats_lock:
            self._injected.setdefault(action, []).extend(codes)

    def calls(self, action: str) -> list[float]:
        """monotonic() times of the calls of `action` that passed authentication."""
        with self._stats_lock:
            return list(self._calls.get(action, []))

    def throttled(self, action: str | None = None) -> int:
        with self._stats_lock:
            return sum(self._throttled.values()) if action is None else self._throttled.get(action, 0)

    def auth_failures(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self._auth_failures)

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._calls.clear()
            self._throttled.clear()
            self._auth_failures.clear()

    # -- request handling (server threads) -----------------------------------------------------

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Answer:
        if self.latency_seconds > 0:
            self._stopping.wait(self.latency_seconds)
        amz_target = headers.get("X-Amz-Target")
        if amz_target is None:
            content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if method == "POST" and content_type == "application/x-www-form-urlencoded":
                return self.sts.handle(body)
            return self._json_error(_ApiError("UnknownOperationException", "Unknown operation"), modeled=False)
        if method != "POST":
            return self._json_error(_ApiError("UnknownOperationException", "Unknown operation"), modeled=False)
        try:
            sigv4.verify(method=method, target=target, headers=headers, body=body, region=self.region,
                         service=SIGNING_NAME, lookup_key=self._signing_key, clock_skew=self.clock_skew,
                         now=datetime.now(UTC) + self.clock_offset)
        except sigv4.SignatureRejected as rejected:
            with self._stats_lock:
                self._auth_failures[rejected.code] = self._auth_failures.get(rejected.code, 0) + 1
            return self._json_error(_ApiError(rejected.code, rejected.message, rejected.status), modeled=False)
        if not amz_target.startswith(TARGET_PREFIX):
            return self._json_error(_ApiError("UnknownOperationException", "Unknown operation"), modeled=False)
        action = amz_target[len(TARGET_PREFIX):]
        handler = self._handlers.get(action)
        if handler is None:
            return self._json_error(_ApiError("UnknownOperationException", "Unknown operation"), modeled=False)
        with self._stats_lock:
            self._calls.setdefault(action, []).append(time.monotonic())
        if not self.throttle.admit(action):
            with self._stats_lock:
                self._throttled[action] = self._throttled.get(action, 0) + 1
            return self._json_error(_ApiError("ThrottlingException", "Rate exceeded"))
        injected = self._next_injected(action)
        if injected is not None:
            return self._json_error(_injected_error(injected, action))
        if action in self.denied_actions:
            return self._json_error(_ApiError(
                "AccessDeniedException",
                f"User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/gateway/session is not authorized to perform: "
                f"sms-voice:{action} because no identity-based policy allows the sms-voice:{action} action"))
        try:
            request = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return self._json_error(_ApiError("SerializationException", "Start of structure or map found where "
                                                                         "not expected"), modeled=False)
        if not isinstance(request, dict):
            return self._json_error(_ApiError("SerializationException", "Expected a JSON object"), modeled=False)
        try:
            return self._json(200, handler(self, request))
        except _ApiError as error:
            return self._json_error(error)

    def _signing_key(self, access_key_id: str) -> sigv4.SigningKey | None:
        if access_key_id == self.access_key_id:
            return sigv4.SigningKey(self.secret_access_key)
        return self.sts.key_for(access_key_id)

    def _next_injected(self, action: str) -> str | None:
        with self._stats_lock:
            queue = self._injected.get(action)
            return queue.pop(0) if queue else None

    # -- actions ---------------------------------------------------------------------------------

    def _list_name(self, request: Mapping[str, Any]) -> str:
        value = request.get("OptOutListName")
        if not isinstance(value, str) or not value:
            raise _validation("Value null at 'optOutListName' failed to satisfy constraint: Member must not be null",
                              "OptOutListName", "MISSING_PARAMETER")
        if len(value) > 256 or not LIST_NAME_OR_ARN_PATTERN.fullmatch(value):
            raise _validation("Value at 'optOutListName' failed to satisfy constraint: Member must satisfy regular "
                              "expression pattern: [A-Za-z0-9_:/-]+", "OptOutListName")
        name = value
        if value.startswith("arn:"):
            prefix = f"arn:aws:sms-voice:{self.region}:{ACCOUNT_ID}:opt-out-list/"
            if not value.startswith(prefix):
                raise _validation("The ARN is not valid", "OptOutListName", "INVALID_ARN")
            name = value[len(prefix):]
        if not self.store.has_list(name):
            raise _not_found("opt-out-list", value)
        return name

    def _number(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise _validation(f"Value null at '{field}' failed to satisfy constraint: Member must not be null",
                              field, "MISSING_PARAMETER")
        if len(value) > 20 or not PHONE_NUMBER_PATTERN.fullmatch(value):
            raise _validation(f"Value at '{field}' failed to satisfy constraint: Member must satisfy regular "
                              "expression pattern: \\+?[1-9][0-9]{1,18}", field)
        if not E164.fullmatch(value):
            raise _validation(f"{field} must be a phone number in E.164 format", field, "INVALID_PARAMETER")
        return value

    def _put(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = self._list_name(request)
        number = self._number(request.get("OptedOutNumber"), "OptedOutNumber")
        try:
            entry = self.store.put(name, number)
        except NotFound as missing:
            raise _not_found(missing.resource_type, missing.resource_id) from None
        return self._entry_answer(name, entry)

    def _delete(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = self._list_name(request)
        number = self._number(request.get("OptedOutNumber"), "OptedOutNumber")
        try:
            entry = self.store.delete(name, number)
        except NotFound as missing:
            raise _not_found(missing.resource_type, missing.resource_id) from None
        except RemovedTooRecently:
            raise _validation("Each destination phone number can only be deleted once every 30 days",
                              "OptedOutNumber", "PHONE_NUMBER_CANNOT_BE_OPTED_IN") from None
        return self._entry_answer(name, entry)

    def _entry_answer(self, name: str, entry: OptedOut) -> dict[str, Any]:
        return {"OptOutListArn": self.list_arn(name), "OptOutListName": name, "OptedOutNumber": entry.number,
                "OptedOutTimestamp": entry.timestamp, "EndUserOptedOut": entry.end_user_opted_out}

    def _describe_opted_out(self, request: Mapping[str, Any]) -> dict[str, Any]:
        name = self._list_name(request)
        wanted = request.get("OptedOutNumbers")
        if wanted is not None and (not isinstance(wanted, list) or len(wanted) > 5):
            raise _validation("Value at 'optedOutNumbers' failed to satisfy constraint: Member must have length "
                              "less than or equal to 5", "OptedOutNumbers")
        numbers = [self._number(value, "OptedOutNumbers") for value in wanted or []]
        end_user_filter = _end_user_filter(request.get("Filters"))
        page_size = _page_size(request.get("MaxResults"))
        after = _decode_token(request.get("NextToken"), name)
        entries = self.store.sorted_entries(name)
        if numbers:
            present = {entry.number: entry for entry in entries}
            missing = [number for number in numbers if number not in present]
            if missing and self.absent_numbers == "error":
                raise _not_found("opted-out-number", missing[0])
            entries = [present[number] for number in sorted(set(numbers)) if number in present]
        if end_user_filter is not None:
            entries = [entry for entry in entries if entry.end_user_opted_out in end_user_filter]
        if after is not None:
            entries = [entry for entry in entries if entry.number > after]
        page, more = entries[:page_size], len(entries) > page_size
        answer: dict[str, Any] = {
            "OptOutListArn": self.list_arn(name),
            "OptOutListName": name,
            "OptedOutNumbers": [{"OptedOutNumber": e.number, "OptedOutTimestamp": e.timestamp,
                                 "EndUserOptedOut": e.end_user_opted_out} for e in page],
        }
        if more:
            answer["NextToken"] = _encode_token(name, page[-1].number)
        return answer

    def _describe_phone_numbers(self, request: Mapping[str, Any]) -> dict[str, Any]:
        ids = request.get("PhoneNumberIds")
        if ids is not None and (not isinstance(ids, list) or len(ids) > 5
                                or not all(isinstance(i, str) and LIST_NAME_OR_ARN_PATTERN.fullmatch(i) for i in ids)):
            raise _validation("Value at 'phoneNumberIds' failed to satisfy constraint", "PhoneNumberIds")
        if ids and request.get("Owner"):
            raise _validation("The Owner and PhoneNumberIds parameters can't be used at the same time", None,
                              "PARAMETERS_CANNOT_BE_USED_TOGETHER")
        page_size = _page_size(request.get("MaxResults"))
        after = _decode_token(request.get("NextToken"), "phone-numbers")
        if ids:
            try:
                phones = [self.store.phone_number(i) for i in ids]
            except NotFound as missing:
                raise _not_found(missing.resource_type, missing.resource_id) from None
        else:
            phones = self.store.phone_numbers()
        for flt in request.get("Filters") or []:
            if not isinstance(flt, dict) or flt.get("Name") != "opt-out-list-name":
                continue
            values = set(flt.get("Values") or [])
            phones = [p for p in phones if p.opt_out_list_name in values]
        if after is not None:
            phones = [p for p in phones if p.phone_number_id > after]
        page, more = phones[:page_size], len(phones) > page_size
        answer: dict[str, Any] = {"PhoneNumbers": [self._phone_answer(p) for p in page]}
        if more:
            answer["NextToken"] = _encode_token("phone-numbers", page[-1].phone_number_id)
        return answer

    def _phone_answer(self, phone: PhoneNumber) -> dict[str, Any]:
        return {
            "PhoneNumberArn": f"arn:aws:sms-voice:{self.region}:{ACCOUNT_ID}:phone-number/{phone.phone_number_id}",
            "PhoneNumberId": phone.phone_number_id,
            "PhoneNumber": phone.phone_number,
            "Status": "ACTIVE",
            "IsoCountryCode": phone.iso_country_code,
            "MessageType": "TRANSACTIONAL",
            "NumberCapabilities": ["SMS"],
            "NumberType": "TOLL_FREE",
            "MonthlyLeasingPrice": "2.00",
            "TwoWayEnabled": False,
            "SelfManagedOptOutsEnabled": False,
            "OptOutListName": phone.opt_out_list_name,
            "DeletionProtectionEnabled": False,
            "CreatedTimestamp": phone.created,
        }

    _handlers = {
        "PutOptedOutNumber": _put,
        "DeleteOptedOutNumber": _delete,
        "DescribeOptedOutNumbers": _describe_opted_out,
        "DescribePhoneNumbers": _describe_phone_numbers,
    }

    # -- answers -------------------------------------------------------------------------------

    def _json(self, status: int, payload: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> Answer:
        headers = {"Content-Type": JSON_CONTENT_TYPE, "x-amzn-RequestId": _request_id()}
        headers.update(extra or {})
        return status, headers, json.dumps(payload).encode("utf-8")

    def _json_error(self, error: _ApiError, *, modeled: bool = True) -> Answer:
        # Modeled exceptions carry the model's members ("Message", ...); errors of the
        # authentication layer carry a lower-case "message", as AWS sends them.
        payload: dict[str, Any] = {"__type": error.code, ("Message" if modeled else "message"): error.message}
        payload.update(error.members)
        return self._json(error.status, payload, {"x-amzn-ErrorType": error.code})


def _request_id() -> str:
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _not_found(resource_type: str, resource_id: str) -> _ApiError:
    return _ApiError("ResourceNotFoundException", f"The {resource_type} {resource_id} was not found",
                     ResourceType=resource_type, ResourceId=resource_id)


def _injected_error(code: str, action: str) -> _ApiError:
    if code == "InternalServerException":
        return _ApiError(code, "An internal error occurred", 500, RequestId=_request_id())
    if code == "AccessDeniedException":
        return _ApiError(code, f"not authorized to perform sms-voice:{action}")
    if code == "ThrottlingException":
        return _ApiError(code, "Rate exceeded")
    return _ApiError(code, "injected failure")


def _end_user_filter(filters: Any) -> set[bool] | None:
    if filters is None:
        return None
    if not isinstance(filters, list) or len(filters) > 20:
        raise _validation("Filters must be a list of at most 20 filters", "Filters")
    allowed: set[bool] | None = None
    for flt in filters:
        if not isinstance(flt, dict) or flt.get("Name") != "end-user-opted-out":
            raise _validation("Value at 'filters.member.name' failed to satisfy constraint: Member must satisfy "
                              "enum value set: [end-user-opted-out]", "Filters")
        values = flt.get("Values")
        if not isinstance(values, list) or not values or any(v not in ("true", "false") for v in values):
            raise _validation("end-user-opted-out filter values must be true or false", "Filters",
                              "INVALID_FILTER_VALUES")
        chosen = {v == "true" for v in values}
        allowed = chosen if allowed is None else allowed & chosen
    return allowed


def _page_size(value: Any) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise _validation("Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 "
                          "and 100", "MaxResults")
    return value


def _encode_token(scope: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"s": scope, "a": after}).encode()).decode()


def _decode_token(token: Any, scope: str) -> str | None:
    if token is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("s") != scope or not isinstance(data.get("a"), str):
        raise _validation("The NextToken is not valid", "NextToken", "INVALID_NEXT_TOKEN")
    return data["a"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], emulator: AwsEmulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    timeout = 300
    server_version = "aws-emulator"
    sys_version = ""
    server: _Server

    def _serve(self) -> None:
        try:
            answer = self._answer()
        except ConnectionError:
            self.close_connection = True
            return
        self._send(*answer)

    do_POST = do_GET = do_PUT = do_DELETE = _serve

    def _answer(self) -> Answer:
        declared = self.headers.get("Content-Length") or "0"
        if self.headers.get("Transfer-Encoding") or not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            self.close_connection = True
            return 400, {"Content-Type": JSON_CONTENT_TYPE}, b'{"__type":"SerializationException","message":' \
                                                             b'"send a body of at most 1 MiB with Content-Length"}'
        length = int(declared)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise ConnectionResetError("the caller hung up before sending the whole body")
        try:
            return self.server.emulator.handle(self.command, self.path, self.headers, body)
        except Exception as failure:
            self.close_connection = True
            return 500, {"Content-Type": JSON_CONTENT_TYPE}, json.dumps(
                {"__type": "InternalFailure", "message": f"the emulator failed ({type(failure).__name__})"}).encode()

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return

