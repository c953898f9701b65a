"""`python -m devtools.acs_emulator`: run the ACS emulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import threading

from .faults import FaultConfig
from .inbound import SubscriptionValidationFailed
from .server import INBOUND_SMS_PATH, SUPPORTED_API_VERSIONS, AcsEmulator


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.acs_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    parser.add_argument("--access-key", help="base64 access key (default: random)")
    parser.add_argument("--owned-sender", action="append", dest="owned_senders",
                        help="a sender this resource owns (repeatable; default: any sender)")
    parser.add_argument("--bearer-token", action="append", default=[], dest="bearer_tokens",
                        help="an accepted bearer token (repeatable)")
    parser.add_argument("--api-version", action="append", dest="api_versions",
                        help=f"an accepted api-version (repeatable; default: {', '.join(SUPPORTED_API_VERSIONS)})")
    parser.add_argument("--clock-skew-seconds", type=float, default=300.0)
    parser.add_argument("--state-file", help="persist the opt-out lists to this JSON file")
    parser.add_argument("--event-webhook", help="deliver SMSReceived events (POST /emulator/sms:receive) to this "
                                                "Event Grid webhook URL, e.g. http://127.0.0.1:7071/runtime/webhooks/"
                                                "eventgrid?functionName=RecordEndUserKeyword&code=KEY")
    parser.add_argument("--event-schema", choices=["eventgrid", "cloudevents"], default="eventgrid",
                        help="the events' schema (default: eventgrid)")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every call")
    faults.add_argument("--latency-spike-rate", type=float, default=0.0)
    faults.add_argument("--latency-spike-ms", type=float, default=0.0)
    faults.add_argument("--throttle-rate", type=float, default=0.0, help="fraction of calls answered 429")
    faults.add_argument("--retry-after", type=float, default=1.0, help="seconds, sent with 429s")
    faults.add_argument("--server-error-rate", type=float, default=0.0, help="fraction of calls answered 5xx")
    faults.add_argument("--server-error-status", type=int, default=503)
    faults.add_argument("--recipient-error-rate", type=float, default=0.0,
                        help="fraction of recipients answered with a per-recipient error")
    faults.add_argument("--recipient-error-status", type=int, action="append", dest="recipient_error_statuses",
                        help="a per-recipient error status: 408, 429, 500, 502, 503 or 504 (repeatable: each "
                             "failed recipient gets one of them at random; default: 500)")
    faults.add_argument("--hang-ms", type=float, default=0.0, help="every call waits this long first")
    faults.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.allow_remote and not _is_loopback(args.host):
        parser.error("the emulator is a development tool: bind a loopback address or pass --allow-remote")
    try:
        faults = FaultConfig(
            latency_seconds=args.latency_ms / 1000,
            latency_spike_rate=args.latency_spike_rate,
            latency_spike_seconds=args.latency_spike_ms / 1000,
            throttle_rate=args.throttle_rate,
            retry_after_seconds=args.retry_after,
            server_error_rate=args.server_error_rate,
            server_error_status=args.server_error_status,
            recipient_error_rate=args.recipient_error_rate,
            recipient_error_statuses=tuple(args.recipient_error_statuses or (500,)),
            hang_seconds=args.hang_ms / 1000,
            seed=args.seed,
        )
        emulator = AcsEmulator(
            access_key=args.access_key,
            owned_senders=args.owned_senders,
            bearer_tokens=args.bearer_tokens,
            faults=faults,
            state_file=args.state_file,
            host=args.host,
            port=args.port,
            clock_skew_seconds=args.clock_skew_seconds,
            api_versions=args.api_versions or SUPPORTED_API_VERSIONS,
        )
    except ValueError as invalid:
        parser.error(str(invalid))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with emulator:
        # Scripts read these two lines (bench/processes.py): keep their order and format.
        print(f"ACS emulator listening on {emulator.endpoint}", flush=True)
        print(f"ACS_CONNECTION_STRING={emulator.connection_string}", flush=True)
        if args.event_webhook:
            try:
                emulator.subscribe(args.event_webhook, args.event_schema)
            except (ValueError, SubscriptionValidationFailed) as failed:
                print(f"SMSReceived events not subscribed: {failed}", flush=True)
            else:
                print(f"SMSReceived events ({args.event_schema} schema) go to the webhook; send one with "
                      f"POST {emulator.endpoint}{INBOUND_SMS_PATH}", flush=True)
        while not stopping.wait(0.5):
            pass
    print("ACS emulator stopped", flush=True)


if __name__ == "__main__":
    main()
