"""One `Provider` in front of several: each operation goes to its sender's provider.

Built in optouts/runtime.py: senders listed for a provider (OPTOUT_AWS_SENDERS, issue 23) go
to it, every other sender to the default (ACS). The use cases see one `Provider` and never
learn which one served them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from optouts.domain.operations import Operation
from optouts.providers.base import (
    ListingProvider,
    OptOutPage,
    Provider,
    ProviderListingNotSupportedError,
    ProviderRejectedError,
    RecipientResult,
)


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

    def list_opted_out(self, sender: str, *, next_token: str | None = None, page_size: int = 100,
                       time_budget: float | None = None) -> OptOutPage:
        """A page of the sender's opt-out list, from a provider that can list (AWS); others raise
        `ProviderListingNotSupportedError` (ACS has no listing call)."""
        provider = self.provider_for(sender)
        if not isinstance(provider, ListingProvider):
            raise ProviderListingNotSupportedError(
                f"{getattr(provider, 'name', 'the provider')} cannot list an opt-out list; "
                "check numbers instead (POST /api/optouts/check)")
        return provider.list_opted_out(sender, next_token=next_token, page_size=page_size, time_budget=time_budget)

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


class NoProvider:
    """The default of a deployment without ACS (AWS senders only): a sender that is not an AWS
    sender reaches no provider. The allowed senders normally refuse it before (403)."""

    name = "none"

    def run(self, operation: Operation, sender: str, recipients: Iterable[str], *,
            time_budget: float | None = None) -> list[RecipientResult]:
        raise ProviderRejectedError("no provider is configured for this sender: it is not in OPTOUT_AWS_SENDERS "
                                    "and no way to reach ACS is configured", code="NoProviderForSender")

    def close(self) -> None:
        pass
