"""The OpenAPI 3.1 document of a table of endpoints, its schemas generated from the msgspec types.

Built from the same :class:`~runtime.service.endpoints.Endpoint` rows as the router, so the
document lists exactly the routes served, with the body and answer types their handlers use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from runtime.service.endpoints import JSON, Endpoint
from runtime.service.types import ErrorBody

_ADMIN = "Needs a token bound to no hive (an admin token)."


def openapi_document(
    table: Sequence[Endpoint], *, anonymous_services: bool = False
) -> dict[str, Any]:
    """The document for ``table``; with ``anonymous_services``, the ``service`` rows take a
    request without a token too."""
    kinds = sorted(
        {k for e in table for k in (e.body, e.answer) if k is not None} | {ErrorBody},
        key=lambda k: k.__name__,
    )
    schemas, components = msgspec.json.schema_components(
        kinds, ref_template="#/components/schemas/{name}"
    )
    ref = dict(zip(kinds, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in table:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, ref, anonymous_services)
    return {
        "openapi": "3.1.0",
        "info": {"title": "registry-runtime", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(e: Endpoint, ref: Mapping[type[Any], Any], anonymous: bool) -> dict[str, Any]:
    error = {"description": "error", "content": {JSON: {"schema": ref[ErrorBody]}}}
    answer: dict[str, Any] = {"description": e.summary}
    if e.answer is not None:
        answer["content"] = {JSON: {"schema": ref[e.answer]}}
    op: dict[str, Any] = {
        "summary": e.summary,
        "operationId": e.operation,
        "parameters": _parameters(e),
        "responses": {str(e.status): answer, "4XX": error, "5XX": error},
    }
    if e.body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref[e.body]}}}
    if e.access != "public":
        optional = e.access == "service" and anonymous
        op["security"] = [{"bearer": []}, {}] if optional else [{"bearer": []}]
    if e.access == "admin":
        op["description"] = _ADMIN
    return op


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    in_path = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in re.findall(r"{(\w+)}", e.path)
    ]
    return in_path + [{"name": q, "in": "query", "schema": {"type": "string"}} for q in e.query]
