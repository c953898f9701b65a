"""`python -m devtools.localhost`: run the function app locally, like `func start`.

Loads `local.settings.json` Values (already-set environment variables win). When no
way to reach ACS is configured, the ACS emulator runs embedded, and the AWS emulator when AWS
senders (OPTOUT_AWS_SENDERS) are configured without an AWS endpoint; when storage is development
storage (or unset), Azurite runs embedded, with the gateway's queues and container created
at start (the change events' queue too). The banner prints the senders, the storage connection string
and the queue names.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from contextlib import ExitStack
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator
from devtools.acs_emulator.inbound import SubscriptionValidationFailed
from devtools.acs_emulator.server import INBOUND_SMS_PATH
from devtools.aws_emulator.embedded import embed_if_needed
from optouts.config import EventSettings, JobSettings, QueueSettings, SettingsError

from .host import LocalHost

ACS_SETTINGS = ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "KEY_VAULT_URL")
EMULATOR_SENDER = "+18005550100"
DEVELOPMENT_STORAGE = "usedevelopmentstorage=true"
#: The function that records an end user's keyword (blueprints/eventgrid_api.py).
KEYWORD_FUNCTION = "RecordEndUserKeyword"


def load_local_settings(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    return {name: str(value) for name, value in values.items() if name not in os.environ}


def parse_keys(pairs: list[str]) -> dict[str, str]:
    keys = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.strip() or not value.strip():
            raise SystemExit(f"function keys are NAME=VALUE, got {pair.split('=')[0]}=...")
        keys[name.strip()] = value.strip()
    return keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.localhost", description=__doc__)
    parser.add_argument("--app-dir", default=".")
    parser.add_argument("--app", default="function_app", help="module that defines `app`")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings-file", default="local.settings.json")
    parser.add_argument("--function-key", action="append", default=[], help="NAME=VALUE (repeatable)")
    parser.add_argument("--master-key")
    parser.add_argument("--azurite-location", help="persist Azurite's data here instead of in memory")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="DEBUG adds the traceback of each failed queue delivery")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # azure-core logs every storage poll at INFO; keep the console for the app's own lines.
    logging.getLogger("azure").setLevel(logging.WARNING)

    app_dir = Path(args.app_dir).resolve()
    settings = load_local_settings(app_dir / args.settings_file)
    keys = parse_keys(args.function_key) or parse_keys(
        [k for k in os.environ.get("LOCALHOST_FUNCTION_KEYS", "").split(",") if k.strip()]
    )
    master_key = args.master_key or os.environ.get("LOCALHOST_MASTER_KEY") or None
    notes: list[str] = []

    with ExitStack() as stack:
        embedded_acs = None
        configured = {**settings, **os.environ}
        if not any(configured.get(name, "").strip() for name in ACS_SETTINGS):
            emulator = embedded_acs = stack.enter_context(AcsEmulator())
            settings["ACS_CONNECTION_STRING"] = emulator.connection_string
            settings.setdefault("OPTOUT_DEFAULT_SENDER", configured.get("OPTOUT_DEFAULT_SENDER") or EMULATOR_SENDER)
            notes.append(f"ACS emulator embedded at {emulator.endpoint} (no ACS setting was configured)")
        embedded_aws = embed_if_needed(stack, configured)
        if embedded_aws is not None:
            aws_settings, note = embedded_aws
            settings.update(aws_settings)
            notes.append(note)
        storage = configured.get("AzureWebJobsStorage", "").replace(" ", "").lower()
        if storage in ("", DEVELOPMENT_STORAGE):
            from devtools.azurite import Azurite

            azurite = stack.enter_context(Azurite(location=args.azurite_location,
                                                  in_memory=args.azurite_location is None))
            settings["AzureWebJobsStorage"] = azurite.connection_string
            notes.append(f"Azurite embedded, queues at http://127.0.0.1:{azurite.queue_port}")
            storage_lines = [f"  AzureWebJobsStorage={azurite.connection_string}"]
        else:
            storage_lines = ["  AzureWebJobsStorage as configured"]
        configured = {**configured, **settings}
        storage_lines += queue_lines(configured, create=storage in ("", DEVELOPMENT_STORAGE))

        host = stack.enter_context(LocalHost(app_dir=app_dir, app_module=args.app, port=args.port,
                                             function_keys=keys or None, master_key=master_key,
                                             settings=settings))
        keyword_lines: list[str] = []
        if embedded_acs is not None:
            keyword_lines = subscribe_keywords(embedded_acs, host,
                                               configured.get("OPTOUT_DEFAULT_SENDER") or EMULATOR_SENDER)
        stopping = threading.Event()
        # Before the banner: whoever reads it may signal at once.
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        print(banner(host, notes, sender_lines(configured), storage_lines, keyword_lines), flush=True)
        while not stopping.wait(0.5):
            pass
        print("Stopping...", flush=True)
    print("Stopped.", flush=True)


def subscribe_keywords(emulator: AcsEmulator, host: LocalHost, sender: str) -> list[str]:
    """The embedded emulator's SMSReceived events to the host's Event Grid webhook, as the system
    topic's subscription does in Azure: the end user's STOP reaches the audit trail."""
    if not any(f.name == KEYWORD_FUNCTION for f in host.event_grid_functions):
        return []
    try:
        emulator.subscribe(host.event_grid_url(KEYWORD_FUNCTION))
    except (ValueError, SubscriptionValidationFailed) as failed:
        return [f"  (the emulator's SMSReceived events are not subscribed: {failed})"]
    return ["An end user texts STOP (the emulator's SMSReceived event reaches RecordEndUserKeyword):",
            f"  curl -s -X POST '{emulator.endpoint}{INBOUND_SMS_PATH}' -H 'content-type: application/json' "
            f"-d '{{\"from\":\"+14255550100\",\"to\":\"{sender}\",\"message\":\"STOP\"}}'"]


def sender_lines(configured: dict[str, str]) -> list[str]:
    default = configured.get("OPTOUT_DEFAULT_SENDER", "").strip()
    allowed = [s.strip() for s in configured.get("OPTOUT_ALLOWED_SENDERS", "").split(",") if s.strip()]
    return [f"  default: {default or '(none: requests must name a sender)'}",
            f"  allowed: {', '.join(allowed) if allowed else default or '(none)'}"]


def queue_lines(configured: dict[str, str], *, create: bool) -> list[str]:
    """The queue API's names; on embedded Azurite, the queues and the container are created
    now, so that a first run can read `optout-results` before any result was published."""
    try:
        names = QueueSettings.from_environ(configured)
        events = EventSettings.from_environ(configured)
    except SettingsError as error:
        return [f"  queues: {error}"]
    queues = [names.requests_queue, names.results_queue, f"{names.requests_queue}-poison"]
    events_queue = events.queue if "queue" in events.sinks else None
    if create:
        connection = configured["AzureWebJobsStorage"]
        for name in [*queues, *([events_queue] if events_queue else [])]:
            _create(QueueClient.from_connection_string(connection, name).create_queue)
        _create(ContainerClient.from_connection_string(connection, names.results_container).create_container)
    lines = [f"  requests queue: {queues[0]}", f"  results queue:  {queues[1]}", f"  poison queue:   {queues[2]}",
             f"  events queue:   {events_queue or '(off: OPTOUT_EVENTS_SINKS has no queue)'}"
             " (change events, CloudEvents JSON, one per message)",
             f"  results blob container: {names.results_container}"]
    try:
        jobs = JobSettings.from_environ(configured)
    except SettingsError as error:
        return [*lines, f"  jobs: {error}"]
    if create:  # where operators upload large lists (a job's blobUrl, a request's phoneNumbersBlob)
        _create(ContainerClient.from_connection_string(configured["AzureWebJobsStorage"],
                                                       jobs.uploads_container).create_container)
    return [*lines, f"  jobs queue: {jobs.queue}", f"  uploads blob container: {jobs.uploads_container}"]


def _create(create: object) -> None:
    try:
        create()  # type: ignore[operator]
    except ResourceExistsError:
        pass


def banner(host: LocalHost, notes: list[str], senders: list[str] | None = None,
           storage: list[str] | None = None, keywords: list[str] | None = None) -> str:
    key_name, key = next(iter(host.function_keys.items()))
    prefix = f"{host.base_url}/{host.config.route_prefix}" if host.config and host.config.route_prefix else host.base_url
    lines = ["", "Functions:"]
    for function in host.http_functions:
        methods = ",".join(sorted(function.methods)) or "ANY"
        lines.append(f"  {function.name}: [{methods}] {prefix}/{function.route.template}  ({function.auth_level})")
    for queue_function in host.queue_functions:
        lines.append(f"  {queue_function.name}: queue {queue_function.queue_name}")
    for event_function in host.event_grid_functions:
        lines.append(f"  {event_function.name}: eventGrid {host.event_grid_url(event_function.name)}")
    lines += ["", f"Function key '{key_name}': {key}"]
    if senders:
        lines += ["Senders:", *senders]
    if storage:
        lines += ["Storage:", *storage]
    lines += [f"Note: {note}" for note in notes]
    example = next((f for f in host.http_functions if f.route.template == "optouts/check"), None)
    lines += ["", "Try:"]
    if example is not None:
        lines.append(f"  curl -s -X POST '{prefix}/optouts/check' -H 'x-functions-key: {key}' "
                     "-H 'content-type: application/json' -d '{\"phoneNumbers\":[\"+14255550100\"]}'")
    elif host.http_functions:
        lines.append(f"  curl -s '{prefix}/{host.http_functions[0].route.template}' -H 'x-functions-key: {key}'")
    lines += keywords or []
    lines += ["", "Press Ctrl+C to stop."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
