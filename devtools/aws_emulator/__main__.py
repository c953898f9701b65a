"""`python -m devtools.aws_emulator`: run the AWS End User Messaging SMS + STS emulator
until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import threading

from .server import ABSENT_NUMBER_MODES, AwsEmulator
from .throttle import DEFAULT_RATES


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rate(text: str) -> tuple[str, float]:
    action, separator, value = text.partition("=")
    if not separator or action not in DEFAULT_RATES:
        raise argparse.ArgumentTypeError(f"expected ACTION=RPS with ACTION one of {', '.join(DEFAULT_RATES)}")
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("the rate must be a number") from None
    if rate < 0:
        raise argparse.ArgumentTypeError("the rate must not be negative")
    return action, rate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.aws_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key-id", help="the static key pair's id (default: random)")
    parser.add_argument("--secret-access-key", help="the static key pair's secret (default: random)")
    parser.add_argument("--opt-out-list", action="append", default=[], dest="lists",
                        help="create this opt-out list (repeatable; 'Default' always exists)")
    parser.add_argument("--phone-number", action="append", default=[], dest="phones", metavar="E164[=LIST]",
                        help="an origination number and its opt-out list (repeatable)")
    parser.add_argument("--rate", action="append", type=_rate, default=[], metavar="ACTION=RPS",
                        help="requests per second for an action (0: unlimited; default: AWS's default quotas)")
    parser.add_argument("--no-throttle", action="store_true", help="no quotas at all")
    parser.add_argument("--absent-numbers", choices=ABSENT_NUMBER_MODES, default="omit",
                        help="how DescribeOptedOutNumbers answers a named number that is not on the list")
    parser.add_argument("--clock-skew-seconds", type=float, default=300.0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every call")
    parser.add_argument("--oidc-audience", default="api://AzureADTokenExchange",
                        help="the audience the STS stand-in's trusted role accepts")
    parser.add_argument("--role-arn", default="arn:aws:iam::123456789012:role/sms-optout-gateway",
                        help="a role the STS stand-in lets web identities assume")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.allow_remote and not _is_loopback(args.host):
        parser.error("the emulator is a development tool: bind a loopback address or pass --allow-remote")
    rates = {} if args.no_throttle else {**DEFAULT_RATES, **dict(args.rate)}
    emulator = AwsEmulator(region=args.region, access_key_id=args.access_key_id,
                           secret_access_key=args.secret_access_key, rates=rates,
                           absent_numbers=args.absent_numbers, clock_skew_seconds=args.clock_skew_seconds,
                           latency_seconds=args.latency_ms / 1000, host=args.host, port=args.port)
    for name in args.lists:
        emulator.store.create_list(name)
    for spec in args.phones:
        number, _, list_name = spec.partition("=")
        emulator.store.add_phone_number(number, list_name or "Default")
    emulator.sts.trust(args.role_arn, audience=args.oidc_audience)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with emulator:
        # Scripts read these lines: keep their order and format.
        print(f"AWS emulator listening on {emulator.endpoint}", flush=True)
        for name, value in emulator.environ().items():
            print(f"{name}={value}", flush=True)
        while not stopping.wait(0.5):
            pass
    print("AWS emulator stopped", flush=True)


if __name__ == "__main__":
    main()
