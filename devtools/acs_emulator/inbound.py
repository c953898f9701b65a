"""Inbound SMS, as ACS and Event Grid deliver them: the emulator's side of the keyword loop.

An end user's SMS to one of the resource's numbers goes through ACS's automatic keyword handling
(STOP and the other opt-out keywords put the number on the sender's list, START and UNSTOP take it
off: optouts.domain.keywords, the table the gateway uses) and then, as Event Grid would, to the
subscribed webhook as a `Microsoft.Communication.SMSReceived` event, in the Event Grid or the
CloudEvents 1.0 schema. Subscribing performs the schema's validation handshake first, as Event Grid
does when a subscription is created. Events whose delivery failed are kept (`undelivered`), the
emulator's dead-letter list: nothing is dropped silently.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
SCHEMAS = ("eventgrid", "cloudevents")
TOPIC = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator/providers/"
         "Microsoft.Communication/communicationServices/acs-emulator")
ORIGIN = "eventgrid.azure.net"
DELIVERY_TIMEOUT_SECONDS = 30.0
#: Event Grid retries 5xx, 408, 429 and connection failures; the emulator a few times, quickly.
DELIVERY_ATTEMPTS = 3


class SubscriptionValidationFailed(RuntimeError):
    pass


def _now() -> str:
    # Seven fractional digits, as ACS and Event Grid write times (.NET ticks).
    instant = datetime.now(UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond:06d}0Z"


def sms_received_data(sender: str, end_user: str, message: str) -> dict[str, Any]:
    return {"messageId": f"Incoming_{datetime.now(UTC):%Y%m%d%H%M%S}{uuid.uuid4()}", "from": end_user,
            "to": sender, "message": message, "receivedTimestamp": _now(), "segmentCount": 1}


def envelope(data: dict[str, Any], schema: str, event_type: str = SMS_RECEIVED) -> dict[str, Any]:
    subject = f"/phonenumber/{data.get('to', '')}"
    if schema == "cloudevents":
        return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": TOPIC, "subject": subject,
                "type": event_type, "time": _now(), "datacontenttype": "application/json", "data": data}
    return {"id": str(uuid.uuid4()), "topic": TOPIC, "subject": subject, "eventType": event_type, "data": data,
            "eventTime": _now(), "dataVersion": "1.0", "metadataVersion": "1"}


@dataclass
class Delivery:
    status: int | None  # the webhook's last answer; None when it could not be reached
    attempts: int


@dataclass
class EventSubscription:
    """An Event Grid subscription of the resource's SMSReceived events to one webhook URL."""

    url: str
    schema: str = "eventgrid"
    undelivered: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.schema not in SCHEMAS:
            raise ValueError(f"the event schema must be one of {', '.join(SCHEMAS)}")
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("the webhook URL must be http(s)")

    def validate(self) -> None:
        """The handshake Event Grid performs when a subscription is created."""
        if self.schema == "cloudevents":
            status, headers, _ = _call(self.url, "OPTIONS", {"WebHook-Request-Origin": ORIGIN}, None)
            if status != 200 or headers.get("webhook-allowed-origin") not in (ORIGIN, "*"):
                raise SubscriptionValidationFailed(f"the CloudEvents handshake was answered {status}")
            return
        code = str(uuid.uuid4())
        event = envelope({"validationCode": code, "validationUrl": None}, "eventgrid", VALIDATION_EVENT)
        event["dataVersion"] = "2"
        status, _, body = _call(self.url, "POST", {"aeg-event-type": "SubscriptionValidation"},
                                json.dumps([event]).encode())
        try:
            answered = json.loads(body).get("validationResponse") if status == 200 else None
        except (ValueError, AttributeError):
            answered = None
        if answered != code:
            raise SubscriptionValidationFailed(f"the validation handshake was answered {status} without the code")

    def deliver(self, data: dict[str, Any]) -> Delivery:
        event = envelope(data, self.schema)
        if self.schema == "cloudevents":
            body, content_type = json.dumps(event).encode(), "application/cloudevents+json; charset=utf-8"
        else:
            body, content_type = json.dumps([event]).encode(), "application/json; charset=utf-8"
        status: int | None = None
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            headers = {"aeg-event-type": "Notification", "Content-Type": content_type,
                       "aeg-subscription-name": "ACS-EMULATOR-SMS", "aeg-delivery-count": str(attempt - 1),
                       "aeg-data-version": "1.0", "aeg-metadata-version": "1"}
            status, _, _ = _call(self.url, "POST", headers, body)
            if status is not None and 200 <= status < 300:
                return Delivery(status, attempt)
            if status is not None and status not in (408, 429) and status < 500:
                break  # Event Grid dead-letters these at once
        with self._lock:
            self.undelivered.append(event)
        return Delivery(status, attempt)


def _call(url: str, method: str, headers: dict[str, str], body: bytes | None) -> tuple[int | None, dict[str, str],
                                                                                       bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:  # nosec B310 - http(s) only
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read(64 * 1024)
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read(64 * 1024)
    except OSError:
        return None, {}, b""
