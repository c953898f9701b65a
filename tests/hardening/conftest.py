"""Fixtures shared by the hardening tests: one Azurite for the whole package (it is slow to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite


@pytest.fixture(scope="package")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running
