"""HTTP middleware: request id, access log, metrics, security headers, body checks, CORS,
Express's trailing slashes.

Written as plain ASGI middleware so streaming responses (SSE) pass through untouched.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpsapi.core.context import client_ip_var, request_id_var
from vpsapi.core.errors import error_body, validation_response
from vpsapi.core.logging import ACCESS_LOGGER
from vpsapi.core.metrics import IN_FLIGHT, LATENCY, REQUESTS, ResponseTimes
from vpsapi.core.schemas import NUL_MESSAGE

access_log = structlog.get_logger(ACCESS_LOGGER)  # the performance stream
error_log = structlog.get_logger("vpsapi.errors")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_DOCS_PATHS = ("/docs", "/redoc")
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; worker-src 'self' blob:"
)
# The values seeds 001 and 004 list (seed 004: "XSS-Protection aktiviert").
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-xss-protection", b"1; mode=block"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # The rest of helmet()'s defaults, which all three Express seeds mount. Not its
    # Cross-Origin-Resource-Policy: a frontend on another site embedding a stored object
    # (an <img>, a camera clip's <video>) would be blocked.
    (b"origin-agent-cluster", b"?1"),
    (b"x-dns-prefetch-control", b"off"),
    (b"x-download-options", b"noopen"),
    (b"x-permitted-cross-domain-policies", b"none"),
]


@dataclass(frozen=True)
class CannedError:
    """An answer the middleware gives itself. With `field`, it is a validation failure,
    answered in the validation shape of the path's body family (400 or 422)."""

    status: int
    code: str
    message: str
    field: str | None = None


_BAD_LENGTH = CannedError(400, "BadRequest", "Invalid Content-Length header")
_TOO_LARGE = CannedError(413, "PayloadTooLarge", "Request body too large")
_INTERNAL = CannedError(500, "InternalServerError", "Internal server error")
_NUL_IN_URL = CannedError(422, "ValidationError", NUL_MESSAGE, field="url")
_NUL_IN_BODY = CannedError(422, "ValidationError", NUL_MESSAGE, field="body")

# A JSON string escape for U+0000: `\u0000` after an even run of other backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# How much of a body chunk is kept to find a NUL escape cut in two by a chunk boundary.
_NUL_SCAN_OVERLAP = 64


class _NulScanner:
    """Finds a NUL character sent as text: PostgreSQL cannot store one in a text column and
    no field of this API means one, so it is refused at the door on every backend alike."""

    def __init__(self, content_type: str) -> None:
        media_type = content_type.partition(";")[0].strip().lower()
        self.pattern: re.Pattern[bytes] | None = None
        # Clients (cameras among them) send JSON unlabelled or as text too.
        if (
            media_type in ("", "application/json")
            or media_type.startswith("text/")
            or media_type.endswith("+json")
        ):
            self.marker, self.pattern = b"u0000", _JSON_NUL
        elif media_type == "application/x-www-form-urlencoded":
            self.marker = b"%00"
        else:  # binary uploads may hold any byte
            self.marker = b""
        self.tail = b""

    def found_in(self, chunk: bytes) -> bool:
        if not self.marker:
            return False
        data = self.tail + chunk
        self.tail = data[-_NUL_SCAN_OVERLAP:]
        if self.marker not in data:
            return False
        return self.pattern is None or self.pattern.search(data) is not None


def new_request_id() -> str:
    """Seed 001's shape, `req_<unix seconds>_<random>`, with 64 random bits."""
    return f"req_{int(time.time())}_{secrets.token_hex(8)}"


def _has_nul(scope: Scope) -> bool:
    """A NUL in the path (decoded) or the query string (still percent-encoded)."""
    return "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestMiddleware:
    """Outermost layer: everything every response must carry, and the 500 safety net."""

    def __init__(self, app: ASGIApp, *, max_body_size: int, response_times: ResponseTimes) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.response_times = response_times

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else new_request_id()
        client_ip = (scope.get("client") or ("unknown", 0))[0]
        rid_token = request_id_var.set(request_id)
        ip_token = client_ip_var.set(client_ip)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, headers, request_id, client_ip)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(rid_token)
            client_ip_var.reset(ip_token)

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        request_id: str,
        client_ip: str,
    ) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        started = time.perf_counter()
        answered = started  # when the answer started
        status = 500
        response_started = False
        extra_headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if not path.startswith(_DOCS_PATHS):
            extra_headers.append((b"content-security-policy", b"default-src 'self'"))
        else:
            extra_headers.append((b"content-security-policy", _DOCS_CSP.encode()))

        rejected: CannedError | None = None  # the body turned out unacceptable while read
        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the app's answer to a refused body is replaced by ours
            if message["type"] == "http.response.start" and rejected is not None:
                replaced = True
                await self._send_error(scope, receive, send_wrapper_raw, rejected)
                return
            await send_wrapper_raw(message)

        async def send_wrapper_raw(message: Message) -> None:
            nonlocal status, response_started, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                answered = time.perf_counter()
                message["headers"] = [*message.get("headers", []), *extra_headers]
            await send(message)

        declared = headers.get("content-length")
        refused: CannedError | None = None
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_size):
            refused = _TOO_LARGE if declared.isdigit() else _BAD_LENGTH
        elif _has_nul(scope):
            refused = _NUL_IN_URL
        if refused is not None:
            await self._send_error(scope, receive, send_wrapper, refused)
            self._record(scope, method, path, status, started, answered, client_ip)
            return

        received = 0
        nul_scanner = _NulScanner(headers.get("content-type", ""))

        async def checked_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body_size:
                    rejected = _TOO_LARGE
                elif nul_scanner.found_in(chunk):
                    rejected = _NUL_IN_BODY
                if rejected is not None:
                    # Parsers turn exceptions here into their own 400, so the flag set above
                    # also replaces whatever the app then answers.
                    raise _BodyRefused()
            return message

        if method == "HEAD":
            # Every GET route answers HEAD too, as HTTP asks and Express does (monitors use
            # it); the server leaves out the body of a HEAD answer itself.
            scope = {**scope, "method": "GET"}
        IN_FLIGHT.inc()
        try:
            await self.app(scope, checked_receive, send_wrapper)
        except _BodyRefused:
            if not response_started and rejected is not None:
                await self._send_error(scope, receive, send_wrapper_raw, rejected)
        except Exception:
            error_log.exception("unhandled_error", path=path, method=method)
            if not response_started:
                await self._send_error(scope, receive, send_wrapper, _INTERNAL)
        finally:
            IN_FLIGHT.dec()
            self._record(scope, method, path, status, started, answered, client_ip)

    async def _send_error(
        self, scope: Scope, receive: Receive, send: Send, error: CannedError
    ) -> None:
        response: Response
        if error.field is not None:
            details = [{"field": error.field, "message": error.message}]
            response = validation_response(Request(scope), details, "Validation failed")
        else:
            body = error_body(
                scope["path"], scope["method"], error.status, error.code, error.message
            )
            response = JSONResponse(body, status_code=error.status)
        await response(scope, receive, send)

    def _record(
        self,
        scope: Scope,
        method: str,
        path: str,
        status: int,
        started: float,
        answered: float,
        client_ip: str,
    ) -> None:
        duration = time.perf_counter() - started
        self.response_times.add(answered - started)
        route = route_template(scope)
        REQUESTS.labels(method, route, str(status)).inc()
        LATENCY.labels(method, route).observe(duration)
        state: dict[str, Any] = scope.get("state", {})
        access_log.info(
            "request",
            method=method,
            path=path,
            status=status,
            duration_ms=round(duration * 1000, 2),
            ip=client_ip,
            user_id=state.get("user_id"),
        )


class _BodyRefused(Exception):
    pass


def _origin_of_request(headers: Headers, scope: Scope) -> str:
    scheme = headers.get("x-forwarded-proto") or scope.get("scheme", "http")
    host = headers.get("x-forwarded-host") or headers.get("host", "")
    return f"{scheme}://{host}".lower()


def _normalize_origin(origin: str) -> str:
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return origin.lower()
    default_port = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    return f"{parts.scheme}://{parts.netloc.lower().removesuffix(default_port)}"


def _lowercase_header_names(app: ASGIApp) -> ASGIApp:
    """ASGI wants header names in lower case; engine.io (Socket.IO) sends its CORS headers
    capitalised, which Starlette's CORS layer then fails to replace: a browser refuses the
    doubled Access-Control-Allow-Origin that results."""

    async def lowercased(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_lowercased(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if any(name != name.lower() for name, _ in headers):
                    message["headers"] = [(name.lower(), value) for name, value in headers]
            await send(message)

        await app(scope, receive, send_lowercased)

    return lowercased


class OriginGuard:
    """Refuses requests from browser origins not in ALLOWED_ORIGINS on every path (403, as
    seed 000's app-wide cors()),
    then lets Starlette's CORS middleware answer for the allowed ones."""

    def __init__(self, app: ASGIApp, *, allowed_origins: list[str]) -> None:
        self.app = app
        self.allow_all = "*" in allowed_origins
        self.allowed = {_normalize_origin(o) for o in allowed_origins if o != "*"}
        self.cors = CORSMiddleware(
            _lowercase_header_names(app),
            allow_origins=["*"] if self.allow_all else sorted(self.allowed),
            allow_credentials=not self.allow_all,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-API-Key",
                "X-Request-ID",
                "X-Frontend-Source",  # seed 004's frontends name themselves
                "Idempotency-Key",
                "Last-Event-ID",
            ],
            expose_headers=[
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
                "Retry-After",
                "ETag",
            ],
            max_age=600,
        )

    def origin_allowed(self, origin: str, headers: Headers, scope: Scope) -> bool:
        normalized = _normalize_origin(origin)
        return (
            self.allow_all
            or normalized in self.allowed
            or normalized == _normalize_origin(_origin_of_request(headers, scope))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.cors(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        # Every path, as seed 000's app-wide cors(): /health too.
        if origin and not self.origin_allowed(origin, headers, scope):
            body = error_body(
                scope["path"],
                scope["method"],
                403,
                "Forbidden",
                "Origin not allowed by CORS policy",
                legacy_body={"error": "CORS policy violation", "origin": origin},
            )
            await JSONResponse(body, status_code=403)(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            if origin and "access-control-request-method" in headers:
                await self.cors(scope, receive, _no_content_preflight(send))
            else:
                await self._options_response(origin)(scope, receive, send)
            return
        if origin is None:  # not a browser's cross-origin call: nothing for CORS to add
            await self.app(scope, receive, send)
            return
        await self.cors(scope, receive, send)

    def _options_response(self, origin: str | None) -> Response:
        """Any other OPTIONS (no preflight's request method, or no Origin): seed 000's
        cors() answers every OPTIONS with 204 and its CORS headers; routes would say 405."""
        headers = dict(self.cors.preflight_headers)
        if origin and self.cors.preflight_explicit_allow_origin:
            headers["Access-Control-Allow-Origin"] = origin
        return Response(status_code=204, headers=headers)


def _no_content_preflight(send: Send) -> Send:
    """A preflight from an allowed origin answers 204 with no body and the allowed methods
    and headers, as the `cors` package of seed 000 does; the browser then refuses what is
    not listed (Starlette answers 200 "OK", or 400 "Disallowed CORS headers" as text)."""
    granted = False

    async def send_204(message: Message) -> None:
        nonlocal granted
        if message["type"] == "http.response.start" and message["status"] in (200, 400):
            granted = True
            kept = [
                (name, value)
                for name, value in message.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type")
            ]
            message = {**message, "status": 204, "headers": kept}
        elif message["type"] == "http.response.body" and granted:
            message = {**message, "body": b""}
        await send(message)

    return send_204


class TrailingSlash:
    """Express's routing, which the seeds' clients know: `/api/jobs/` is `/api/jobs`,
    answered as such, where Starlette would redirect (307; a Dart client does not follow
    one for a POST, httpx not at all). A path a route takes with its slash keeps it. A
    WebSocket cannot follow a redirect at all: one a slash short of a route (Socket.IO at
    `/ws` when a client is set not to add the slash) gets the slash in place."""

    # Deciding scans every route, up to twice (about as long as a small request takes):
    # decisions are kept, a bounded number, since a scanner's paths never repeat.
    MAX_DECISIONS = 4096

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.router = router
        self._decisions: dict[tuple[str, str, str], str | None] = {}

    def _routed(self, scope: Scope, path: str) -> bool:
        candidate = {**scope, "path": path}
        return any(route.matches(candidate)[0] != Match.NONE for route in self.router.routes)

    def _routed_path(self, scope: Scope) -> str | None:
        """The path to answer instead, when only it is routed (the method plays no part:
        a route of another method matches partly, which counts as routed)."""
        path = scope["path"]
        key = (scope["type"], scope.get("root_path", ""), path)
        if key in self._decisions:
            return self._decisions[key]
        instead = path[:-1] if path.endswith("/") else path + "/"
        decision = None
        if not self._routed(scope, path) and self._routed(scope, instead):
            decision = instead
        if len(self._decisions) >= self.MAX_DECISIONS:
            self._decisions.clear()
        self._decisions[key] = decision
        return decision

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        slashed = len(path) > 1 and path[-1] == "/"
        if (scope["type"] == "websocket" or (scope["type"] == "http" and slashed)) and (
            instead := self._routed_path(scope)
        ):
            raw_path = scope.get("raw_path")
            scope = {**scope, "path": instead}
            if raw_path is not None and not slashed:
                scope["raw_path"] = raw_path + b"/"
            elif raw_path is not None and raw_path.endswith(b"/"):  # not an escaped `%2F`
                scope["raw_path"] = raw_path[:-1]
        await self.app(scope, receive, send)


def refuses_gzip(accept_encoding: str) -> bool:
    """`gzip;q=0` (or `*;q=0` naming no gzip), which RFC 9110 makes a refusal; Starlette
    only looks for the word."""
    wildcard_refused, gzip_quality = False, None
    for coding in accept_encoding.lower().split(","):
        name, _, params = coding.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 1.0
        if name.strip() in ("gzip", "x-gzip"):
            gzip_quality = quality
        elif name.strip() == "*":
            wildcard_refused = quality == 0
    return gzip_quality == 0 if gzip_quality is not None else wildcard_refused


class NegotiatedGZip(GZipMiddleware):
    """Starlette's gzip for the clients that accept it, q-values read."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            accept = Headers(scope=scope).get("accept-encoding", "")
            if "q=" in accept.lower() and refuses_gzip(accept):  # a refusal needs a q
                headers = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
                scope = {**scope, "headers": headers}
        await super().__call__(scope, receive, send)
