"""Structured logging: JSON lines in production, readable console in development.

Secrets never reach the log: values of keys that name credentials are masked by a
processor that every log line passes through, whatever the destination.

Besides the console, the service writes JSON lines into separate files in LOG_DIR
(`LOG_TO_FILES`): `application.log` takes everything at LOG_LEVEL and above; the
named streams take their loggers' lines at INFO and above whatever LOG_LEVEL says:
`audit.log` (AUDIT_LOGGER), `performance.log` (ACCESS_LOGGER, one line per request)
and `security.log` (SECURITY_LOGGER: auth failures, rate-limit hits, denials).
`structured.log` is a symlink to `application.log`, the name seed 002's operators tail.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import structlog

from vpsapi.config import Settings, SettingsError

_SECRET_KEYS = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|cookie|dsn|credential|private",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer|ApiKey)\s+[A-Za-z0-9._\-~+/=]+", re.IGNORECASE)
_SK = re.compile(r"sk_live_[A-Za-z0-9_\-]+")
# A JWT anywhere in a text (e.g. a URL with ?access_token= logged by an HTTP client).
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
_SECRET_QUERY = re.compile(
    r"([?&](?:access_token|refresh_token|token|api_?key|key|password|secret|signature|sig"
    r"|x-amz-signature)=)"
    r"[^&\s\"']+",
    re.IGNORECASE,
)
# What every string must contain for one of the four patterns above to match: one search
# lets the plain strings of a log line (methods, paths, ids) skip the four substitutions.
_MAY_HOLD_SECRET = re.compile(r"bearer|apikey|sk_live_|eyJ|=", re.IGNORECASE)


AUDIT_LOGGER = "vpsapi.audit"
ACCESS_LOGGER = "vpsapi.access"
SECURITY_LOGGER = "vpsapi.security"
APPLICATION_STREAM = "application"
# Stream name -> the logger (and its children) whose lines it holds.
STREAM_LOGGERS = {
    "audit": AUDIT_LOGGER,
    "performance": ACCESS_LOGGER,
    "security": SECURITY_LOGGER,
}
LOG_STREAMS = (APPLICATION_STREAM, *STREAM_LOGGERS)
# Not a stream: a relative symlink to application.log. It names the file, not the inode,
# so it follows the rotation (application.log is recreated under the same name), and
# neither the readers nor the cleanup see it (they go by stream names).
STRUCTURED_ALIAS = "structured.log"


def stream_path(log_dir: Path, stream: str) -> Path:
    """The active file of a stream; rotated ones are `<name>.1` (newest) … `<name>.N`."""
    return log_dir / f"{stream}.log"


def redact(value: Any) -> Any:
    """A copy of `value` with credential-named keys masked and tokens cut from strings."""
    return _redact_value(value)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        if not _MAY_HOLD_SECRET.search(value):
            return value
        value = _SECRET_QUERY.sub(r"\1****", _BEARER.sub(r"\1 ****", value))
        return _JWT.sub("****", _SK.sub("sk_live_****", value))
    if isinstance(value, dict):
        return {
            k: ("****" if _SECRET_KEYS.search(str(k)) else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


@cache
def _names_secret(key: str) -> bool:
    # Log lines reuse a small set of keys: each is looked at once per process.
    return _SECRET_KEYS.search(key) is not None


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key in ("event", "timestamp", "level", "logger"):
            if key == "event":
                event_dict[key] = _redact_value(event_dict[key])
            continue
        if _names_secret(key):
            event_dict[key] = "****"
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


class RenderOnceFormatter(structlog.stdlib.ProcessorFormatter):
    """Renders a record once for every handler that shares this formatter: a request's
    access line goes to the console, application.log and performance.log, and rendering it
    (a copy of the record, the processors, the JSON) cost more than writing it three times."""

    def format(self, record: logging.LogRecord) -> str:
        rendered: tuple[RenderOnceFormatter, str] | None = getattr(record, "_rendered", None)
        if rendered is not None and rendered[0] is self:
            return rendered[1]
        text = super().format(record)
        record._rendered = (self, text)
        return text


class SharedRotatingFileHandler(logging.Handler):
    """A size-rotated JSON-lines file that several processes may append to at once.

    Every line is one `write()` on an O_APPEND descriptor, so lines of different
    processes never interleave. The writer that finds the file full renames
    `x.log` -> `x.log.1` -> … under an exclusive flock on `.x.log.lock` (re-checking
    the size first: another process may have rotated while it waited), and every
    writer re-opens the path as soon as it no longer names the file it holds, as
    WatchedFileHandler does. An external logrotate (rename + new file, no
    copytruncate) therefore works as well.
    """

    def __init__(self, path: Path, *, max_bytes: int, backup_count: int) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._lock_path = path.with_name(f".{path.name}.lock")
        self._fd = -1
        self._identity = (0, 0)
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)

    def _size_of_current_file(self) -> int:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:  # rotated away and not recreated yet
            self._open()
            return 0
        if (info.st_dev, info.st_ino) != self._identity:
            self._open()
        return info.st_size

    def _rotate(self, incoming: int) -> None:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            full = size > 0 and size + incoming > self.max_bytes
            if full:
                for number in range(self.backup_count - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{number}")
                    if older.exists():
                        os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            size = self._size_of_current_file()
            if size and size + len(line) > self.max_bytes:
                self._rotate(len(line))
            os.write(self._fd, line)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        super().close()


def _connection_cut_off(record: logging.LogRecord) -> bool:
    """SQLAlchemy's pool logs an error with a traceback when a connection's reset or close
    is cut off by a cancellation (a client gone, a read past its bound under overload), or
    when it cannot force-close an aiosqlite connection (no such call in that driver): the
    pool drops the connection all the same. A warning line without the traceback says so."""
    exc = record.exc_info[1] if record.exc_info else None
    cut_off = isinstance(exc, asyncio.CancelledError) or (
        isinstance(exc, NotImplementedError) and "terminate_force_close" in str(exc)
    )
    if cut_off and record.name.startswith("sqlalchemy.pool"):
        record.msg = f"database_connection_dropped: {record.getMessage()} ({type(exc).__name__})"
        record.args = ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
    return True


def _stream_handlers(
    settings: Settings, formatter: logging.Formatter, level: int
) -> list[logging.Handler]:
    log_dir = settings.effective_log_dir

    def handler(stream: str, handler_level: int) -> logging.Handler:
        made = SharedRotatingFileHandler(
            stream_path(log_dir, stream),
            max_bytes=settings.log_max_bytes,
            backup_count=settings.log_backup_count,
        )
        made.setFormatter(formatter)
        made.setLevel(handler_level)
        return made

    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers = [handler(APPLICATION_STREAM, level)]
        for stream, logger_name in STREAM_LOGGERS.items():
            made = handler(stream, min(level, logging.INFO))
            made.addFilter(logging.Filter(logger_name))
            handlers.append(made)
    except OSError as exc:
        raise SettingsError(
            f"cannot write the log files in LOG_DIR {log_dir} ({exc.strerror}): point LOG_DIR "
            "at a writable directory or set LOG_TO_FILES=false"
        ) from exc
    return handlers


def _link_structured_alias(log_dir: Path) -> None:
    target = stream_path(log_dir, APPLICATION_STREAM).name  # relative: LOG_DIR may move
    try:
        (log_dir / STRUCTURED_ALIAS).symlink_to(target)
    except FileExistsError:
        pass  # made by another process sharing LOG_DIR or an earlier start, or the operator's
    except OSError as exc:  # a filesystem without symlinks: the alias is a convenience
        structlog.get_logger("vpsapi.logging").debug(
            "structured_log_alias_skipped", error=exc.strerror
        )


def configure_logging(settings: Settings) -> None:
    use_json = settings.effective_log_format == "json"
    level = logging.getLevelNamesMapping()[settings.log_level]  # a name checked by Settings
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    def formatter(renderer: Any, *, with_tracebacks: bool) -> RenderOnceFormatter:
        return RenderOnceFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *([structlog.processors.format_exc_info] if with_tracebacks else []),
                renderer,
            ],
        )

    # The files always hold JSON lines; the console too unless a developer reads it. Compact
    # as winston writes them, so `grep '"level":"error"'` finds what it looks for.
    json_lines = formatter(
        structlog.processors.JSONRenderer(separators=(",", ":")), with_tracebacks=True
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        json_lines
        if use_json
        else formatter(
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()), with_tracebacks=False
        )
    )
    handler.setLevel(level)
    handlers: list[logging.Handler] = [handler]
    if settings.log_to_files:
        handlers += _stream_handlers(settings, json_lines, level)
    # No line shows where it was logged from or which thread or process logged it: the
    # logging HOWTO's "Optimization" settings spare every record collecting them.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, SharedRotatingFileHandler):
            previous.close()
    for made in handlers:
        made.addFilter(_connection_cut_off)
    root.handlers[:] = handlers
    root.setLevel(level)
    # The streams keep their INFO lines even when LOG_LEVEL is higher; the console
    # and application.log still filter at LOG_LEVEL through their handler level.
    for logger_name in STREAM_LOGGERS.values():
        logging.getLogger(logger_name).setLevel(
            min(level, logging.INFO) if settings.log_to_files else logging.NOTSET
        )
    # Our access log replaces uvicorn's, which would log full query strings.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Which of its plugins alembic loaded, on every start: noise (its migration steps stay).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if settings.log_to_files:
        _link_structured_alias(settings.effective_log_dir)
    for notice in settings.notices:
        structlog.get_logger("vpsapi.config").warning("setting_notice", detail=notice)


def init_sentry(settings: Settings) -> None:
    if settings.sentry_dsn is None:
        return
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment,
        # An unhandled error is answered (500) and logged by our middleware, never raised
        # to the SDK's ASGI layer: error lines are the events. sentry-sdk 3 no longer
        # enables this by default. Tracing stays off (no traces_sample_rate).
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
        # No personal data (sentry-sdk 3's successor of send_default_pii=False): no user
        # identity, cookies, client addresses (forwarding headers), bodies, SQL parameters
        # or Redis values (emails, key hashes, addresses), queue payloads, AI prompts or
        # local variables (a request's scope and headers sit in most frames); query
        # strings keep the SDK's scrubbing of credential-named keys.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {
                "request": {"mode": "allowlist", "terms": ["content-type", "content-length"]}
            },
            "http_bodies": [],
            "database_query_data": False,
            "queues": False,
            "gen_ai": {"inputs": False, "outputs": False},
            "mcp": {"inputs": False, "outputs": False},
            "graphql": {"document": False, "variables": False},
            "stack_frame_variables": False,
        },
    )
