"""What a Socket.IO client sends that cannot be read is a warning in the log, never an
error with a traceback; a failure on our side is still answered and logged as one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

import httpx
import pytest
from engineio import packet as engineio_packet
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from support import ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess, login
from vpsapi.citypulse import service
from vpsapi.citypulse.realtime_input import CLIENT_INPUT
from vpsapi.core.errors import MalformedJson
from vpsapi.core.schemas import parse_json_body


async def _frames(url: str, token: str, frames: list[str | bytes]) -> None:
    """Connect to the default namespace, send `frames`, wait for the server's verdict."""
    async with connect(url, open_timeout=10) as socket:
        await socket.recv()  # Engine.IO open
        await socket.send(json.dumps({"token": token}).join(("40", "")))
        assert str(await asyncio.wait_for(socket.recv(), 10)).startswith("40")
        for frame in frames:
            await socket.send(frame)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 1)  # closed, or nothing to say


@pytest.mark.multiprocess
async def test_garbage_from_a_client_is_a_warning_without_a_traceback(
    server_factory: Any, settings_factory: Any
) -> None:
    """Each was an error with a library traceback in the log (one a uvicorn "Exception in
    ASGI application" that dropped the socket without its cleanup), the handshakes an
    error line each."""
    server: ServerProcess = server_factory(settings_factory())
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
        url = server.base_url.replace("http", "ws", 1) + "/ws/?EIO=4&transport=websocket"
        for frame in (
            "42garbage",  # no Socket.IO packet
            '42["subscribe",{"buildingId":"a\x00b"}]',  # a raw NUL: no JSON
            "42" + "[" * 5000,  # nested past the JSON parser's depth
            "49",  # no Socket.IO packet type
            b"\x00\x01binary",  # a binary frame no event announced
            "4" + "[" * 5000,  # an Engine.IO message nested past the depth
            "9",  # no Engine.IO packet type
            "x",
            "",
        ):
            await _frames(url, token, [frame])
        for query in ("EIO=99&transport=polling", "EIO=4&transport=polling&sid=nope"):
            assert (await client.get(f"/ws/?{query}")).status_code == 400
        assert (await client.get("/ws/?EIO=4&transport=pigeon")).status_code == 400

    await asyncio.sleep(0.5)  # the last lines reach the log
    logged = server.log_path.read_text()
    assert "Traceback" not in logged  # the libraries' own handlers wrote them as plain text
    records = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert [r for r in records if r["level"] in ("error", "critical") or "exception" in r] == []
    warnings = [r["event"] for r in records if r["level"] == "warning"]
    assert sum(e.startswith("socketio_malformed_packet: ") for e in warnings) == 5, warnings
    assert warnings.count("socketio_malformed_frame") == 4, warnings
    assert sum("(further occurrences" in e for e in warnings) == 3, warnings


async def test_a_failure_on_our_side_is_answered_and_logged_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(service, "get_building", broken)
    sio = client.app.state.citypulse_realtime.sio  # type: ignore[attr-defined]
    monkeypatch.setattr(sio.manager, "is_connected", lambda sid, namespace: True)
    subscribe = sio.handlers["/"]["subscribe"]
    with caplog.at_level(logging.ERROR):
        ack = await subscribe("sid-1", {"buildingId": "b-1"})
    assert ack == {"ok": False, "error": "Internal server error"}
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert failures[0].msg["event"] == "socketio_handler_failed"  # type: ignore[index]


async def test_a_client_gone_meanwhile_is_no_failure(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket that disconnected while its subscribe was being checked cannot join the
    room (python-socketio raises): routine, not a bug to log with a traceback."""

    async def found(*_: Any) -> None:
        return None

    async def gone(sid: str, *_: Any, **__: Any) -> None:
        raise KeyError(sid)  # what the in-process manager raises (Redis's raises nothing)

    monkeypatch.setattr(service, "get_building", found)
    sio = client.app.state.citypulse_realtime.sio  # type: ignore[attr-defined]
    monkeypatch.setattr(sio, "enter_room", gone)
    with caplog.at_level(logging.WARNING):
        ack = await sio.handlers["/"]["subscribe"]("sid-gone", {"buildingId": "b-1"})
    assert ack == {"ok": False, "error": "Disconnected"}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def _record(exc_info: Any, message: str = "message async handler error") -> logging.LogRecord:
    return logging.LogRecord("engineio.server", logging.ERROR, "", 0, message, None, exc_info)


def test_only_tracebacks_through_library_code_alone_become_warnings() -> None:
    try:
        engineio_packet.Packet(encoded_packet="x")
    except ValueError:
        garbage = _record(sys.exc_info())
    try:
        parse_json_body(b"{")  # a traceback through our code: a bug of ours, say
    except MalformedJson:
        ours = _record(sys.exc_info())
    try:
        engineio_packet.Packet(encoded_packet="x")
    except ValueError:
        library_task = _record(sys.exc_info(), "service task exception")
    for record in (garbage, ours, library_task):
        assert CLIENT_INPUT.filter(record)
    assert garbage.levelname == "WARNING" and garbage.exc_info is None
    assert garbage.getMessage().startswith("socketio_malformed_packet: ValueError: ")
    assert ours.levelname == library_task.levelname == "ERROR"
    assert ours.exc_info is not None and library_task.exc_info is not None
