"""Which forwarded headers to believe: X-Forwarded-Host/-Proto only from a configured proxy.

A front door, gateway or proxy in front of the app rewrites the host callers see; it says so in
X-Forwarded-Host. So can anyone else, so the header is believed only when the request came
through one of the addresses in OPTOUT_TRUSTED_FORWARDERS (IPs or CIDR ranges; default none).
"Came through" is the last hop of X-Forwarded-For: App Service's front end appends the address
that connected to it (with a port), after whatever the caller wrote there (the local host does
the same).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import urlsplit

from optouts.config import SettingsError
from optouts.contract.openapi import PLACEHOLDER_HOST

TRUSTED_FORWARDERS_SETTING = "OPTOUT_TRUSTED_FORWARDERS"

# A forwarded header is caller-controlled text that lands in a document people import:
# accept host names, IPv4/IPv6 literals and a port, nothing else.
_HOST_PATTERN = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$"
)
_SCHEMES = ("https", "http")
_logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_forwarders(value: str) -> tuple[Network, ...]:
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(TRUSTED_FORWARDERS_SETTING,
                                "must be IP addresses or CIDR ranges separated by commas") from None
    return tuple(networks)


def trusted_forwarders(environ: Mapping[str, str] | None = None) -> tuple[Network, ...]:
    return _trusted_forwarders((os.environ if environ is None else environ).get(TRUSTED_FORWARDERS_SETTING, ""))


@lru_cache(maxsize=4)
def _trusted_forwarders(value: str) -> tuple[Network, ...]:
    try:
        return parse_trusted_forwarders(value)
    except SettingsError as error:  # fail closed: no forwarded header is believed
        _logger.error("%s; forwarded headers are ignored", error)
        return ()


def public_origin(url: str, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> tuple[str, str]:
    """(scheme, host) the caller used: the request's own, or what a trusted proxy forwarded."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower() if parts.scheme.lower() in _SCHEMES else "https"
    host = parts.netloc.rsplit("@", 1)[-1]  # never echo credentials from the URL
    if not _HOST_PATTERN.match(host):
        host = headers.get("host") or ""
    if trusted and _last_hop_is_trusted(headers.get("x-forwarded-for"), trusted):
        forwarded_scheme = _first(headers.get("x-forwarded-proto")).lower()
        if forwarded_scheme in _SCHEMES:
            scheme = forwarded_scheme
        forwarded_host = _first(headers.get("x-forwarded-host"))
        if _HOST_PATTERN.match(forwarded_host):
            host = forwarded_host
    if not _HOST_PATTERN.match(host):
        host = PLACEHOLDER_HOST
    return scheme, host


def _last_hop_is_trusted(forwarded_for: str | None, trusted: tuple[Network, ...]) -> bool:
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    if not hops:
        return False
    address = _address(hops[-1])
    return address is not None and any(address in network for network in trusted)


def _address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`."""
    text = hop
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _first(value: str | None) -> str:
    # Proxies chained one after another append: "client-facing, next-hop".
    return (value or "").split(",")[0].strip()
