"""GET /api/openapi.json: the contract with the caller's host filled in, so a Power Automate
custom connector can be created straight from the URL. Anonymous: it holds no secret."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import azure.functions as func

blueprint = func.Blueprint()

# A forwarded header is caller-controlled text that lands in a document people import:
# accept host names, IPv4/IPv6 literals and a port, nothing else.
_HOST_PATTERN = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$"
)
_SCHEMES = ("https", "http")


def public_origin(url: str, headers: Mapping[str, str]) -> tuple[str, str]:
    """(scheme, host) the caller used, preferring what a front door or proxy says it forwarded."""
    parts = urlsplit(url)
    scheme = _first(headers.get("x-forwarded-proto")).lower()
    if scheme not in _SCHEMES:
        scheme = parts.scheme.lower() if parts.scheme.lower() in _SCHEMES else "https"
    host = _first(headers.get("x-forwarded-host"))
    if not _HOST_PATTERN.match(host):
        host = parts.netloc.rsplit("@", 1)[-1]  # never echo credentials from the URL
    if not _HOST_PATTERN.match(host):
        host = headers.get("host") or ""
    if not _HOST_PATTERN.match(host):
        from optouts.contract.openapi import PLACEHOLDER_HOST

        host = PLACEHOLDER_HOST
    return scheme, host


def _first(value: str | None) -> str:
    # Proxies chained one after another append: "client-facing, next-hop".
    return (value or "").split(",")[0].strip()


@blueprint.function_name("OpenApiDocument")
@blueprint.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    # Imported here, not at module level: indexing the app (cold start) does not need it.
    from optouts.contract.openapi import build_document

    scheme, host = public_origin(req.url, req.headers)
    document = build_document(host, schemes=(scheme,))
    return func.HttpResponse(
        json.dumps(document, ensure_ascii=False, indent=2),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
