"""Every REST API error is JSON: ``{"error": {"code", "message", "field"?}}``.

One place maps failures to responses:

* :class:`~ewsgate.portal.services.errors.ServiceError` → its ``status``, ``code``, ``message``
  and ``field`` (429 adds ``Retry-After``; 401 adds ``WWW-Authenticate: Bearer``);
* request validation (FastAPI/pydantic) → 422 naming the first bad field (``unknown_field``
  for a field the operation does not take, ``missing_field``, ``invalid_input``), or 400
  ``malformed_json`` when the body is not JSON at all; ``details`` lists every problem;
* HTTP errors (unknown path, wrong method) → their status with a ``code`` such as
  ``not_found`` / ``method_not_allowed``;
* a database that is unavailable right now (locked past the busy timeout, down, out of
  connections, a lock conflict: :mod:`ewsgate.portal.store.unavailable`) → 503
  ``database_unavailable`` with ``Retry-After`` (JSON under ``/api/``, a short HTML page
  elsewhere); the transaction was rolled back;
* anything else → 500 ``internal_error`` without internals (logged).

Only paths under ``/api/`` get JSON; the web UI's pages keep their HTML error handling.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ewsgate.portal.services.errors import RateLimited, ServiceError
from ewsgate.portal.store.unavailable import RETRY_AFTER_SECONDS, unavailable_reason

__all__ = ["API_PREFIX", "error_response", "install_error_handlers"]

API_PREFIX = "/api/"
log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
               413: "too_large", 415: "unsupported_media_type", 429: "too_many_requests"}


def error_response(status: int, code: str, message: str, *, field: str | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ewsgate"'
    return error_response(exc.status, exc.code, exc.message, field=exc.field,
                          headers=headers or None)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_api(request):
        return await request_validation_exception_handler(request, exc)
    errors = list(exc.errors())
    details = [{"field": _field_name(tuple(e.get("loc", ()))), "type": e.get("type"),
                "message": str(e.get("msg", ""))} for e in errors]
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    field = _field_name(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        return error_response(400, "malformed_json",
                              "the request body is not valid JSON: "
                              f"{first.get('ctx', {}).get('error', 'parse error')}; send a JSON "
                              "object with Content-Type: application/json", details=details)
    if kind == "extra_forbidden":
        return error_response(422, "unknown_field",
                              f"unknown field {field!r}; remove it (see the OpenAPI document "
                              "at /api/v1/openapi.json for the fields this call takes)",
                              field=field, details=details)
    if kind == "missing":
        return error_response(422, "missing_field", f"{field} is required", field=field,
                              details=details)
    if kind in ("model_attributes_type", "dict_type") and field == "body":
        return error_response(422, "invalid_input", "the request body must be a JSON object",
                              field=field, details=details)
    return error_response(422, "invalid_input", f"{field}: {first.get('msg', 'invalid')}",
                          field=field, details=details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_api(request):
        return await http_exception_handler(request, exc)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no API endpoint {request.method} {request.url.path}; see /api/v1/openapi.json"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message,
                          headers=dict(exc.headers) if exc.headers else None)


_UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{retry}">
<title>Temporarily unavailable · ewsgate</title></head>
<body><h1>The portal is temporarily unavailable</h1>
<p>Its database cannot be used right now ({reason}). Nothing was changed. This page retries
by itself in {retry} seconds.</p></body></html>
"""


async def _database_error(request: Request, exc: Exception) -> Response:
    reason = unavailable_reason(exc)
    if reason is None:
        return await _unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s (%s)", request.method, request.url.path,
                reason, type(exc).__name__)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if not _is_api(request):
        return HTMLResponse(_UNAVAILABLE_PAGE.format(reason=html.escape(reason),
                                                     retry=RETRY_AFTER_SECONDS),
                            status_code=503, headers=headers)
    return error_response(503, "database_unavailable",
                          f"the portal's database is unavailable right now ({reason}); nothing "
                          f"was changed; retry in {RETRY_AFTER_SECONDS} s", headers=headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error",
                          "the portal failed to handle this request; it was logged")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
