"""Socket.IO real time (python-socketio, ASGI) served under `/ws` (socket.io path `ws`).

Clients authenticate with a JWT in the connect `auth: {token}` (an `sk_live_` API key is
accepted there too) or `?access_token=<jwt>`; anything else is refused. Every client joins
`user:<id>` and, when it names a known frontend (`auth.source` or the `X-Frontend-Source`
header), `source:<frontend>`. A `subscribe` event `{buildingId}` joins `building:<id>`;
`{jobId}` forwards `job:progress` for a job the user owns. Every subscribe and unsubscribe
is answered (acked): `{ok: false, error}` for an id no URL path could carry (a NUL, an
unpaired surrogate), an unknown one, or a failure on our side (logged once).

With REDIS_URL set, `AsyncRedisManager` relays every emit through Redis, so an event
produced by any process reaches clients connected to any other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import socketio
import structlog

from vpsapi.auth import service as auth_service
from vpsapi.citypulse import service
from vpsapi.citypulse.metrics import KNOWN_FRONTENDS, SOCKET_CONNECTIONS, frontend_label
from vpsapi.citypulse.realtime_input import FrameGuard, configure_library_loggers
from vpsapi.citypulse.runtime import building_room
from vpsapi.core.db import database_failure, shielded_read
from vpsapi.core.errors import AppError, NotFound, ValidationFailed
from vpsapi.core.modules import switched_off
from vpsapi.core.schemas import unstorable_text
from vpsapi.core.security import API_KEY_PREFIX, Principal
from vpsapi.jobs import service as jobs_service
from vpsapi.jobs.engine import TERMINAL, job_channel

if TYPE_CHECKING:
    from fastapi import FastAPI

log = structlog.get_logger("vpsapi.citypulse.realtime")

SOCKETIO_PATH = "ws"
JOB_SNAPSHOT_INTERVAL = 30.0  # seconds: re-read the job row when no event arrives
INTERNAL_ERROR = "Internal server error"

Ack = dict[str, Any]


def _failure_message(exc: Exception, event: str, sid: str) -> str:
    """What a client hears of a handler's failure, as an HTTP route would answer it; a bug
    is logged (once, with its traceback) and told as an internal error."""
    error = exc if isinstance(exc, AppError) else database_failure(exc)
    if error is None:
        log.exception("socketio_handler_failed", socketio_event=event, sid=sid)
        return INTERNAL_ERROR
    return error.message


def _always_acked(
    event: str, handler: Callable[..., Awaitable[Ack]], connected: Callable[[str], bool]
) -> Callable[..., Awaitable[Ack]]:
    """`handler`, answering whatever happens: python-socketio sends no ack for a handler
    that raised (the client waits forever) and leaves its exception to asyncio's "Task
    exception was never retrieved". A failure because the client left meanwhile (joining
    a room of a socket already gone is a KeyError) is routine: no one to tell, no bug."""

    async def acked(sid: str, *args: Any) -> Ack:
        try:
            return await handler(sid, *args)
        except Exception as exc:
            if not connected(sid):
                return {"ok": False, "error": "Disconnected"}
            return {"ok": False, "error": _failure_message(exc, event, sid)}

    return acked


def _event_id(data: dict[str, Any], field: str) -> str | None:
    """`data[field]` when it names something (a non-empty string), held to the rules of an
    id in a URL path: a NUL or an unpaired surrogate is a validation failure there (and
    no text PostgreSQL could compare)."""
    value = data.get(field)
    if not isinstance(value, str) or not value:
        return None
    if problem := unstorable_text(value):
        raise ValidationFailed([{"field": field, "message": problem}], f"{field} {problem}")
    return value


class RealtimeServer:
    def __init__(self, app: FastAPI) -> None:
        settings = app.state.settings
        self.app = app
        manager = (
            socketio.AsyncRedisManager(
                settings.redis_url, channel=f"{settings.redis_prefix}:socketio"
            )
            if settings.redis_url
            else None
        )
        origins = settings.allowed_origins
        socketio_logger, engineio_logger = configure_library_loggers()
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            # Same origin only unless ALLOWED_ORIGINS says otherwise, as for the HTTP API.
            cors_allowed_origins="*" if "*" in origins else (origins or None),
            logger=socketio_logger,
            engineio_logger=engineio_logger,
        )
        self._job_watchers: dict[str, set[asyncio.Task[None]]] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("subscribe", _always_acked("subscribe", self._subscribe, self._connected))
        self.sio.on("unsubscribe", _always_acked("unsubscribe", self._unsubscribe, self._connected))

    def _connected(self, sid: str) -> bool:
        return bool(self.sio.manager.is_connected(sid, "/"))

    def asgi_app(self) -> FrameGuard:
        return FrameGuard(socketio.ASGIApp(self.sio, socketio_path=SOCKETIO_PATH))

    async def emit(self, event: str, data: dict[str, Any], rooms: list[str]) -> None:
        await self.sio.emit(event, data, to=rooms)

    async def shutdown(self) -> None:
        for tasks in self._job_watchers.values():
            for task in tasks:
                task.cancel()
        await self.sio.shutdown()

    # ---- connection -----------------------------------------------------------------

    async def _authenticate(self, environ: dict[str, Any], auth: Any) -> Principal:
        token = auth.get("token") if isinstance(auth, dict) else None
        from_query = False
        if not token:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            token = (query.get("access_token") or [None])[0]
            from_query = True
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("No token provided")
        if token.startswith(API_KEY_PREFIX) and from_query:  # keys in URLs end up in proxy logs
            raise socketio.exceptions.ConnectionRefusedError(
                "Use a JWT access token in access_token, not an API key"
            )
        with shielded_read():  # the client may leave meanwhile
            async with self.app.state.db.session() as session:
                if token.startswith(API_KEY_PREFIX):
                    return await auth_service.principal_from_api_key(session, token, None)
                return await auth_service.principal_from_token(session, self.app.state.codec, token)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """Refuses with the reason (`connect_error`), a failure on our side too (logged
        once): an exception of another kind would leave the client waiting."""
        try:
            await self._admit(sid, environ, auth)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception as exc:
            message = _failure_message(exc, "connect", sid)
            raise socketio.exceptions.ConnectionRefusedError(message) from exc

    async def _admit(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        if not self.app.state.settings.websocket_enabled:
            raise socketio.exceptions.ConnectionRefusedError(
                switched_off("websocket_enabled", "Socket.IO")
            )
        principal = await self._authenticate(environ, auth)
        declared = auth.get("source") if isinstance(auth, dict) else None
        source = frontend_label(declared or environ.get("HTTP_X_FRONTEND_SOURCE"))
        await self.sio.save_session(sid, {"principal": principal, "source": source})
        await self.sio.enter_room(sid, f"user:{principal.user_id or principal.subject}")
        if source in KNOWN_FRONTENDS:
            await self.sio.enter_room(sid, f"source:{source}")
        SOCKET_CONNECTIONS.inc()
        log.info("socket_connected", sid=sid, subject=principal.subject, frontend_source=source)

    async def _disconnect(self, sid: str, *_: Any) -> None:
        SOCKET_CONNECTIONS.dec()
        for task in self._job_watchers.pop(sid, set()):
            task.cancel()

    # ---- subscriptions --------------------------------------------------------------

    async def _subscribe(self, sid: str, data: Any = None, *_: Any) -> Ack:
        """Ack `{ok: true, room}`, `{ok: true, jobId}` or `{ok: false, error}`."""
        if not isinstance(data, dict):
            return {"ok": False, "error": "Send {buildingId} or {jobId}"}
        if building_id := _event_id(data, "buildingId"):
            if not self.app.state.settings.citypulse_enabled:
                return {"ok": False, "error": switched_off("citypulse_enabled", "CityPulse")}
            with shielded_read():
                async with self.app.state.db.session() as session:
                    await service.get_building(session, building_id)
            room = building_room(building_id)
            await self.sio.enter_room(sid, room)
            return {"ok": True, "room": room}
        if job_id := _event_id(data, "jobId"):
            return await self._watch_job(sid, job_id)
        return {"ok": False, "error": "Send {buildingId} or {jobId}"}

    async def _unsubscribe(self, sid: str, data: Any = None, *_: Any) -> Ack:
        building_id = _event_id(data, "buildingId") if isinstance(data, dict) else None
        if not building_id:
            return {"ok": False, "error": "Send {buildingId}"}
        room = building_room(building_id)
        await self.sio.leave_room(sid, room)
        return {"ok": True, "room": room}

    async def _watch_job(self, sid: str, job_id: str) -> Ack:
        principal: Principal = (await self.sio.get_session(sid))["principal"]
        with shielded_read():
            async with self.app.state.db.session() as session:
                await jobs_service.get_job(session, principal, job_id)  # NotFound unless owned
        task = asyncio.create_task(self._forward_job(sid, principal, job_id))
        watchers = self._job_watchers.setdefault(sid, set())
        watchers.add(task)
        task.add_done_callback(watchers.discard)
        return {"ok": True, "jobId": job_id}

    async def _forward_job(self, sid: str, principal: Principal, job_id: str) -> None:
        """`job:progress` to this client: the row first, then on every job event (the
        row is re-read each time, so a lost pub/sub message costs nothing)."""
        sent = -1
        with contextlib.suppress(NotFound):
            async with self.app.state.events.subscribe(job_channel(job_id)) as subscription:
                while True:
                    with shielded_read():  # the client may leave meanwhile
                        async with self.app.state.db.session() as session:
                            record = await jobs_service.get_job(session, principal, job_id)
                            job = jobs_service.job_out(record)
                            seq = record.seq
                    if seq > sent:
                        sent = seq
                        await self.sio.emit(
                            "job:progress",
                            job.model_dump(mode="json", exclude_none=True),
                            to=sid,
                        )
                    if job.status in TERMINAL:
                        return
                    await subscription.get(timeout=JOB_SNAPSHOT_INTERVAL)


def mount(app: FastAPI) -> FrameGuard:
    """`Module.mounts` factory: the Socket.IO app, kept on app.state for the lifespan."""
    server = RealtimeServer(app)
    app.state.citypulse_realtime = server
    return server.asgi_app()
