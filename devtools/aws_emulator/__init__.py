"""A local AWS End User Messaging SMS (pinpoint-sms-voice-v2) and STS stand-in (see docs/aws-emulator.md)."""

from .server import AwsEmulator
from .throttle import DEFAULT_RATES

__all__ = ["DEFAULT_RATES", "AwsEmulator"]
