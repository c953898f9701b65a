"""Shared fixtures: a real ACS emulator on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.acs_emulator import AcsEmulator
from optouts.acs import OptOutsClient

SENDER = "+18005550100"
OTHER_SENDER = "+18005550111"


@pytest.fixture
def emulator() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER, OTHER_SENDER}) as running:
        yield running


def fast_client(connection_string: str, **options: object) -> OptOutsClient:
    """A client with retry pauses shrunk so fault tests stay quick."""
    settings: dict[str, object] = {
        "retry_backoff_factor": 0.01,
        "retry_backoff_max": 0.05,
        "recipient_retry_backoff": 0.01,
        "time_budget": 30.0,
    }
    settings.update(options)
    return OptOutsClient.from_connection_string(connection_string, **settings)  # type: ignore[arg-type]


@pytest.fixture
def client(emulator: AcsEmulator) -> Iterator[OptOutsClient]:
    with fast_client(emulator.connection_string) as opened:
        yield opened
