"""host.json as the Functions host reads it, with `AzureFunctionsJobHost__...` app
settings overriding it (the host's documented override mechanism)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues, with the host's defaults (Storage extension 5.x)."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def threshold(self) -> int:
        # The host's default is half the batch size (per processor core); one worker here.
        return self.new_batch_threshold if self.new_batch_threshold is not None else self.batch_size // 2


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str
    queues: QueueOptions
    raw: dict[str, Any]


def load_host_config(app_dir: Path, environ: Mapping[str, str] | None = None) -> HostConfig:
    env = os.environ if environ is None else environ
    path = app_dir / "host.json"
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for name, value in env.items():
        if name.startswith(OVERRIDE_PREFIX):
            _set_path(raw, name[len(OVERRIDE_PREFIX):].split("__"), value)
    extensions = _child(raw, "extensions")
    http = _child(extensions, "http")
    queues = _child(extensions, "queues")
    prefix = http.get(_key(http, "routePrefix"), "api")
    options = QueueOptions(
        batch_size=int(_get(queues, "batchSize", 16)),
        new_batch_threshold=int(v) if (v := _get(queues, "newBatchThreshold", None)) is not None else None,
        max_polling_interval=parse_timespan(_get(queues, "maxPollingInterval", "00:01:00")),
        visibility_timeout=parse_timespan(_get(queues, "visibilityTimeout", "00:00:00")),
        max_dequeue_count=int(_get(queues, "maxDequeueCount", 5)),
        message_encoding=str(_get(queues, "messageEncoding", "base64")).lower(),
    )
    if options.message_encoding not in ("base64", "none"):
        raise ValueError("host.json extensions.queues.messageEncoding must be 'base64' or 'none'")
    return HostConfig(route_prefix=str(prefix).strip("/"), queues=options, raw=raw)


def parse_timespan(value: Any) -> float:
    """`hh:mm:ss[.fff]` or `d.hh:mm:ss` (as host.json writes durations) to seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise ValueError(f"not a timespan: {value!r}")
    days = int(match.group("days") or 0)
    return days * 86400 + int(match.group("h")) * 3600 + int(match.group("m")) * 60 + float(match.group("s"))


def _key(section: dict[str, Any], name: str) -> str:
    """host.json keys are case-insensitive."""
    for key in section:
        if key.lower() == name.lower():
            return key
    return name


def _get(section: dict[str, Any], name: str, default: Any) -> Any:
    return section.get(_key(section, name), default)


def _child(section: dict[str, Any], name: str) -> dict[str, Any]:
    value = section.get(_key(section, name))
    return value if isinstance(value, dict) else {}


def _set_path(section: dict[str, Any], path: list[str], value: str) -> None:
    for part in path[:-1]:
        key = _key(section, part)
        if not isinstance(section.get(key), dict):
            section[key] = {}
        section = section[key]
    section[_key(section, path[-1])] = value
