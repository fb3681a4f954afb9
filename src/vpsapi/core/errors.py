"""One error hierarchy and the handlers that turn it into the documented bodies.

Three body families exist on the wire:
- `/api/v1/...` uses the seed-001 envelope (`success: false, error, message, statusCode, ...`);
- paths registered as FastAPI-style (seed 002's VPS manager) answer as FastAPI does,
  `{"detail": ...}` with 422 for validation, plus `error` and `requestId`;
- every other path keeps the seed-000/003 body `{"error": "..."}` (400 for validation).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Mount

from vpsapi.core.context import client_ip_var, request_id_var
from vpsapi.core.logging import SECURITY_LOGGER
from vpsapi.core.timestamps import js_now

log = structlog.get_logger("vpsapi.errors")
security_log = structlog.get_logger(SECURITY_LOGGER)

V1_PREFIX = "/api/v1"
# Filled from the modules at app creation (`register_fastapi_style`).
_fastapi_style_prefixes: set[str] = set()


def register_fastapi_style(prefixes: list[str]) -> None:
    _fastapi_style_prefixes.update(prefix.rstrip("/") for prefix in prefixes)


def is_fastapi_style(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in _fastapi_style_prefixes)


# Exact paths documented with express-validator's `{errors: [...]}` 400 (filled from the
# modules at app creation): the validation failures the middleware finds take it too.
_express_validator_paths: set[str] = set()


def register_express_validator(paths: list[str]) -> None:
    _express_validator_paths.update(paths)


class AppError(Exception):
    """Base of every error the API answers deliberately."""

    status_code = 500
    code = "InternalServerError"
    message = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.headers = headers or {}
        # `body` replaces the legacy `{"error": ...}` body (for seed-specific shapes);
        # `extra` adds fields to either family.
        self.body = body
        self.extra = extra or {}
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400
    code = "BadRequest"
    message = "Bad request"


class MalformedJson(BadRequest):
    """A body that is no JSON: 400, but FastAPI's 422 `json_invalid` on seed 002's paths.
    `attempted`: whether it looks meant as JSON at all (an object or an array)."""

    message = "Malformed JSON in request body"

    def __init__(self, *, attempted: bool = True) -> None:
        super().__init__()
        self.attempted = attempted


class Unauthorized(AppError):
    status_code = 401
    code = "Unauthorized"
    message = "Authentication required"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class TokenRejected(Unauthorized):
    """A token presented that is no valid one (malformed, badly signed, expired, of the
    wrong type). The auth dependencies write it to the security log as `token_rejected`,
    logout included, which reads its tokens itself."""


class Forbidden(AppError):
    status_code = 403
    code = "Forbidden"
    message = "Insufficient permissions"


class NotFound(AppError):
    status_code = 404
    code = "NotFound"
    message = "Resource not found"


class Conflict(AppError):
    status_code = 409
    code = "Conflict"
    message = "Resource already exists"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "PayloadTooLarge"
    message = "Request body too large"


class Unprocessable(AppError):
    """A well-formed request the server cannot carry out (e.g. nginx rejected a config)."""

    status_code = 422
    code = "UnprocessableEntity"
    message = "Request could not be processed"


class TooManyRequests(AppError):
    status_code = 429
    code = "TooManyRequests"
    message = "Too many requests, please try again later"


class ClientClosedRequest(AppError):
    """The client left before its answer (nginx's 499): no one reads this one, but the
    access log and the metrics say what became of the request."""

    status_code = 499
    code = "ClientClosedRequest"
    message = "The client closed the request"


class RangeNotSatisfiable(AppError):
    """A download's Range that starts past the file's end (`Content-Range: bytes */<size>`)."""

    status_code = 416
    code = "RangeNotSatisfiable"
    message = "Range not satisfiable"


class BadGateway(AppError):
    """An upstream service answered with an error or with nonsense."""

    status_code = 502
    code = "BadGateway"
    message = "Upstream service failed"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "ServiceUnavailable"
    message = "Service temporarily unavailable"


class GatewayTimeout(AppError):
    """An upstream service did not answer in time."""

    status_code = 504
    code = "GatewayTimeout"
    message = "Upstream service timed out"


class ValidationFailed(AppError):
    """Input failed validation: 422 with `errors` on /api/v1, 400 with `details` elsewhere."""

    status_code = 422
    code = "ValidationError"
    message = "Validation failed"

    def __init__(self, details: list[dict[str, str]], message: str | None = None) -> None:
        super().__init__(message)
        self.details = details


def invalid(field: str, message: str) -> ValidationFailed:
    """A field or query parameter that failed a check of ours: 422 naming it, as
    FastAPI's own validation answers."""
    return ValidationFailed([{"field": field, "message": message}])


def is_v1(path: str) -> bool:
    return path == V1_PREFIX or path.startswith(V1_PREFIX + "/")


def error_body(
    path: str,
    method: str,
    status_code: int,
    code: str,
    message: str,
    *,
    extra: dict[str, Any] | None = None,
    legacy_body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    request_id = request_id_var.get()
    if is_v1(path):
        body: dict[str, Any] = {
            "success": False,
            "error": code,
            "message": message,
            "statusCode": status_code,
            "timestamp": js_now(),
            "path": path,
            "method": method,
            "requestId": request_id,
        }
    else:
        body = dict(legacy_body) if legacy_body is not None else {"error": message}
        if is_fastapi_style(path):
            # Seed 002's clients read `detail` from every error, a limiter's or CORS's too.
            body.setdefault("detail", body.get("error", message))
        body.setdefault("requestId", request_id)
    if extra:
        body.update(extra)
    return body


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    legacy_body: dict[str, Any] | None = None,
) -> JSONResponse:
    body = error_body(
        request.url.path,
        request.method,
        status_code,
        code,
        message,
        extra=extra,
        legacy_body=legacy_body,
    )
    return JSONResponse(body, status_code=status_code, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


NOT_A_JSON_OBJECT = "Request body must be a JSON object (Content-Type: application/json)"
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower() in _FORM_TYPES


# Pydantic's words for a body that is no object ("Input should be a valid dictionary or
# object to extract fields from"), which is what arrives without a JSON content type.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def _clean_message(err: dict[str, Any]) -> str:
    if err.get("type") == "json_invalid":
        return "Malformed JSON in request body"
    if tuple(err.get("loc", ())) == ("body",) and err.get("type") in _NOT_AN_OBJECT:
        return NOT_A_JSON_OBJECT
    message = str(err.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


def validation_details(errors: list[dict[str, Any]] | Any) -> list[dict[str, str]]:
    return [{"field": _field_name(e.get("loc", ())), "message": _clean_message(e)} for e in errors]


def _location(request: Request, field: str) -> list[str]:
    """Where a field checked by hand came from, as FastAPI's own errors say it (`url` and
    `body` alone name the whole of one, a NUL found in it by the middleware)."""
    if field in ("url", "body"):
        return [field]
    parts = field.split(".")
    if parts[0] in request.path_params:
        return ["path", *parts]
    return ["query" if parts[0] in request.query_params else "body", *parts]


def validation_response(
    request: Request, details: list[dict[str, str]], message: str
) -> JSONResponse:
    if is_v1(request.url.path):
        grouped: dict[str, list[str]] = {}
        for item in details:
            grouped.setdefault(item["field"], []).append(item["message"])
        return error_response(request, 422, "ValidationError", message, extra={"errors": grouped})
    if is_fastapi_style(request.url.path):
        detail = [
            {
                "type": "value_error",
                "loc": _location(request, item["field"]),
                "msg": item["message"],
            }
            for item in details
        ]
        return error_response(
            request,
            422,
            "ValidationError",
            message,
            legacy_body={"detail": detail, "error": message},
        )
    if request.url.path in _express_validator_paths:
        # `url` and `body` name the whole of one, as express-validator's `body()` (path "").
        errors = [
            {
                "type": "field",
                "msg": item["message"],
                "path": "" if item["field"] in ("url", "body") else item["field"],
                "location": "query" if item["field"] == "url" else "body",
            }
            for item in details
        ]
        return error_response(
            request, 400, "ValidationError", message, legacy_body={"errors": errors}
        )
    return error_response(
        request,
        400,
        "ValidationError",
        message,
        legacy_body={"error": message, "details": details},
    )


async def _app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    if isinstance(exc, ValidationFailed):
        return validation_response(request, exc.details, exc.message)
    message = exc.message
    if isinstance(exc, MalformedJson):
        if is_fastapi_style(request.url.path):
            return _malformed_json_as_fastapi(request, ["body"])
        if _is_form(request) and not exc.attempted:
            # A real form, which Express's urlencoded parser would have taken: say why not.
            message = NOT_A_JSON_OBJECT
    if isinstance(exc, Forbidden):
        security_log.warning(
            "permission_denied",
            method=request.method,
            path=request.url.path,
            reason=exc.message,
            user_id=getattr(request.state, "user_id", None),
            ip=client_ip_var.get() or None,
        )
    return error_response(
        request,
        exc.status_code,
        exc.code,
        message,
        headers=exc.headers,
        extra=exc.extra,
        legacy_body=exc.body,
    )


def _malformed_json_as_fastapi(request: Request, loc: list[Any]) -> JSONResponse:
    """FastAPI's own answer (`loc` is `["body", <offset>]` where the parser says where)."""
    detail = [{"type": "json_invalid", "loc": loc, "msg": "JSON decode error"}]
    body = {"detail": detail, "error": MalformedJson.message}
    return error_response(request, 422, "ValidationError", "", legacy_body=body)


async def _request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        if is_fastapi_style(request.url.path):
            return _malformed_json_as_fastapi(request, list(malformed.get("loc", ("body",))))
        return error_response(request, 400, "BadRequest", MalformedJson.message)
    if is_fastapi_style(request.url.path):
        # FastAPI's own shape, where each error says where it was (query, path or body);
        # not the input itself, which may be a password.
        detail = [
            {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": _clean_message(e)}
            for e in errors
        ]
        body = {"detail": detail, "error": "Validation failed"}
        return error_response(request, 422, "ValidationError", "", legacy_body=body)
    return validation_response(request, validation_details(errors), "Validation failed")


_HTTP_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


_ROUTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str | None:
    """Every method answered at this request's path, for a 405's `Allow`: Starlette's names
    only the first matching route's (`PUT /api/jobs` said `POST`, though `GET` is there too).
    HEAD goes wherever GET does and OPTIONS everywhere (`RequestMiddleware`, `OriginGuard`).
    None for a path no route of the app's own answers (a mounted app's: it said its own)."""
    # Matched from the application's root, also when a mounted app raised the 405.
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    scope = {**request.scope, "root_path": root}
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    allowed = [
        method
        for method in _ROUTED_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    if not allowed:
        return None
    if "GET" in allowed:
        allowed.insert(1, "HEAD")
    return ", ".join([*allowed, "OPTIONS"])


async def _client_disconnect_handler(request: Request, exc: Exception) -> JSONResponse:
    """The client went while its body was read (a dropped connection, a broken chunked
    body): nginx's 499, as a chat whose client left, not a server error with a traceback.
    No one reads the answer; the access log and the metrics count it."""
    return await _app_error_handler(request, ClientClosedRequest())


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI's "There was an error parsing the body" hides why it could not read one.
    if isinstance(exc.__cause__, UnicodeDecodeError | RecursionError):
        # A JSON body that is no UTF-8, or nested deeper than Python's json can recurse
        # (valid JSON, which `parse_json_body` refuses as malformed too): answered as any
        # other body that is no JSON.
        return await _app_error_handler(request, MalformedJson())
    if isinstance(exc.__cause__, ClientDisconnect):
        return await _client_disconnect_handler(request, exc.__cause__)
    status_code = exc.status_code
    headers = dict(exc.headers or {})
    if status_code == 405 and (allowed := allowed_methods(request)) is not None:
        headers["Allow"] = allowed
    if status_code == 404 and exc.detail == "Not Found":
        # Each family's own words: seed 001's envelope example, seed 000's catch-all.
        message = NotFound.message if is_v1(request.url.path) else "Endpoint not found"
    else:
        message = str(exc.detail)
    return error_response(
        request,
        status_code,
        _HTTP_CODES.get(status_code, "Error"),
        message,
        headers=headers,
    )


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return error_response(request, 500, "InternalServerError", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(ClientDisconnect, _client_disconnect_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
