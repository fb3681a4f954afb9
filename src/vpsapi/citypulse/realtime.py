"""Socket.IO real time (python-socketio, ASGI) served under `/ws` (socket.io path `ws`).

Clients authenticate with a JWT in the connect `auth: {token}` (an `sk_live_` API key is
accepted there too) or `?access_token=<jwt>`; anything else is refused. Every client joins
`user:<id>` and, when it names a known frontend (`auth.source` or the `X-Frontend-Source`
header), `source:<frontend>`. A `subscribe` event `{buildingId}` joins `building:<id>`;
`{jobId}` forwards `job:progress` for a job the user owns.

With REDIS_URL set, `AsyncRedisManager` relays every emit through Redis, so an event
produced by any process reaches clients connected to any other."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import socketio
import structlog

from vpsapi.auth import service as auth_service
from vpsapi.citypulse import service
from vpsapi.citypulse.metrics import KNOWN_FRONTENDS, SOCKET_CONNECTIONS, frontend_label
from vpsapi.citypulse.runtime import building_room
from vpsapi.core.db import shielded_read
from vpsapi.core.errors import AppError, NotFound
from vpsapi.core.modules import switched_off
from vpsapi.core.security import API_KEY_PREFIX, Principal
from vpsapi.jobs import service as jobs_service
from vpsapi.jobs.engine import TERMINAL, job_channel

if TYPE_CHECKING:
    from fastapi import FastAPI

log = structlog.get_logger("vpsapi.citypulse.realtime")

SOCKETIO_PATH = "ws"
JOB_SNAPSHOT_INTERVAL = 30.0  # seconds: re-read the job row when no event arrives


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
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            # Same origin only unless ALLOWED_ORIGINS says otherwise, as for the HTTP API.
            cors_allowed_origins="*" if "*" in origins else (origins or None),
            logger=False,
            engineio_logger=False,
        )
        self._job_watchers: dict[str, set[asyncio.Task[None]]] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("subscribe", self._subscribe)
        self.sio.on("unsubscribe", self._unsubscribe)

    def asgi_app(self) -> socketio.ASGIApp:
        return socketio.ASGIApp(self.sio, socketio_path=SOCKETIO_PATH)

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
        async with self.app.state.db.session() as session:
            try:
                if token.startswith(API_KEY_PREFIX):
                    if from_query:  # keys in URLs end up in proxy logs
                        raise socketio.exceptions.ConnectionRefusedError(
                            "Use a JWT access token in access_token, not an API key"
                        )
                    return await auth_service.principal_from_api_key(session, token, None)
                return await auth_service.principal_from_token(session, self.app.state.codec, token)
            except AppError as exc:
                raise socketio.exceptions.ConnectionRefusedError(exc.message) from exc

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
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

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        """Ack `{ok: true, room}` or `{ok: false, error}`."""
        if not isinstance(data, dict):
            return {"ok": False, "error": "Send {buildingId} or {jobId}"}
        building_id, job_id = data.get("buildingId"), data.get("jobId")
        try:
            if isinstance(building_id, str) and building_id:
                if not self.app.state.settings.citypulse_enabled:
                    return {"ok": False, "error": switched_off("citypulse_enabled", "CityPulse")}
                async with self.app.state.db.session() as session:
                    await service.get_building(session, building_id)
                room = building_room(building_id)
                await self.sio.enter_room(sid, room)
                return {"ok": True, "room": room}
            if isinstance(job_id, str) and job_id:
                return await self._watch_job(sid, job_id)
        except NotFound as exc:
            return {"ok": False, "error": exc.message}
        return {"ok": False, "error": "Send {buildingId} or {jobId}"}

    async def _unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        building_id = data.get("buildingId") if isinstance(data, dict) else None
        if not isinstance(building_id, str) or not building_id:
            return {"ok": False, "error": "Send {buildingId}"}
        room = building_room(building_id)
        await self.sio.leave_room(sid, room)
        return {"ok": True, "room": room}

    async def _watch_job(self, sid: str, job_id: str) -> dict[str, Any]:
        principal: Principal = (await self.sio.get_session(sid))["principal"]
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


def mount(app: FastAPI) -> socketio.ASGIApp:
    """`Module.mounts` factory: the Socket.IO app, kept on app.state for the lifespan."""
    server = RealtimeServer(app)
    app.state.citypulse_realtime = server
    return server.asgi_app()
