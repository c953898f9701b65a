"""GET /api/openapi.json: the contract with the caller's host filled in, so a Power Automate
custom connector can be created straight from the URL. Anonymous: it holds no secret."""

from __future__ import annotations

import json
from collections.abc import Mapping

import azure.functions as func

from optouts.contract.openapi import build_document
from optouts.forwarding import public_origin as forwarded_origin
from optouts.forwarding import trusted_forwarders

blueprint = func.Blueprint()

#: Answers built from forwarded headers (the contract, nextLink) vary with them.
FORWARDED_VARY = "X-Forwarded-Host, X-Forwarded-Proto"


def public_origin(url: str, headers: Mapping[str, str]) -> tuple[str, str]:
    """(scheme, host) the caller used; forwarded headers only from OPTOUT_TRUSTED_FORWARDERS."""
    return forwarded_origin(url, headers, trusted_forwarders())


@blueprint.function_name("OpenApiDocument")
@blueprint.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    scheme, host = public_origin(req.url, req.headers)
    document = build_document(host, schemes=(scheme,))
    return func.HttpResponse(
        json.dumps(document, ensure_ascii=False, indent=2),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "Vary": FORWARDED_VARY},
    )
