"""One `Provider` in front of several: each operation goes to its sender's provider.

Built in optouts/runtime.py: senders listed for a provider (OPTOUT_AWS_SENDERS, issue 23) go
to it, every other sender to the default (ACS). The use cases see one `Provider` and never
learn which one served them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from optouts.domain.operations import Operation
from optouts.providers.base import Provider, RecipientResult


class ProviderRouter:
    """A `Provider` that hands each operation to the provider its sender belongs to."""

    name = "router"

    def __init__(self, default: Provider, by_sender: Mapping[str, Provider] | None = None) -> None:
        self._default = default
        self._by_sender = {sender.strip(): provider for sender, provider in (by_sender or {}).items()}

    @property
    def providers(self) -> list[Provider]:
        """Every distinct provider, the default first."""
        distinct: list[Provider] = [self._default]
        for provider in self._by_sender.values():
            if all(provider is not known for known in distinct):
                distinct.append(provider)
        return distinct

    def provider_for(self, sender: str) -> Provider:
        return self._by_sender.get(sender.strip(), self._default)

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        return self.provider_for(sender).run(operation, sender, recipients, time_budget=time_budget)

    def close(self) -> None:
        """Close every provider, each once, even when one of them fails to close."""
        errors: list[Exception] = []
        for provider in self.providers:
            try:
                provider.close()
            except Exception as error:  # the others still hold pools and connections
                errors.append(error)
        if errors:
            raise errors[0]
