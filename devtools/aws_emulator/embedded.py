"""The AWS emulator embedded in `make run` (devtools/localhost) when AWS senders are
configured without an AWS endpoint: local runs then need no AWS account."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack

from devtools.aws_emulator.server import AwsEmulator

#: Any of these means the developer points at an AWS endpoint of their own.
ENDPOINT_SETTINGS = ("AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2", "AWS_ENDPOINT_URL")


def embed_if_needed(stack: ExitStack, configured: Mapping[str, str]) -> tuple[dict[str, str], str] | None:
    """Start the emulator when `configured` (local settings + environment) names AWS senders
    but no endpoint; returns the settings that point the gateway at it and a banner note.

    Each sender's opt-out list is created (a bare number becomes an origination number on the
    `Default` list), and the gateway signs with the emulator's dev-only key pair through boto3's
    standard chain: web identity federation needs Azure, so OPTOUT_AWS_ROLE_ARN is set aside."""
    senders = configured.get("OPTOUT_AWS_SENDERS", "").strip()
    if not senders or any(configured.get(name, "").strip() for name in ENDPOINT_SETTINGS):
        return None
    region = configured.get("AWS_REGION", "").strip() or "us-east-1"
    emulator = stack.enter_context(AwsEmulator(region=region))
    for entry in senders.split(","):
        sender, separator, list_name = (part.strip() for part in entry.partition("="))
        if not sender:
            continue
        if separator and list_name:
            emulator.store.create_list(list_name.rsplit("/", 1)[-1])
        else:
            emulator.store.add_phone_number(sender, "Default")
    settings = {**emulator.environ(), "OPTOUT_AWS_ROLE_ARN": "", "OPTOUT_AWS_ACCESS_KEY_SECRET_NAME": ""}
    return settings, f"AWS emulator embedded at {emulator.endpoint} (AWS senders without an AWS endpoint)"
