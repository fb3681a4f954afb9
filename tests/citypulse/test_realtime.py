"""Socket.IO on /ws with the real python-socketio client against real server processes."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import socketio
from websockets.asyncio.client import connect

from support import ADMIN_EMAIL, ADMIN_PASSWORD, SHARED_API_KEY, ServerProcess, login

BASE = "/api/v1/citypulse"
T0 = datetime(2026, 4, 1, tzinfo=UTC)

pytestmark = pytest.mark.multiprocess


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Listener:
    """A connected Socket.IO client that queues every event it receives, per name."""

    EVENTS = ("sensor:reading", "energy:update", "alert:opened", "alert:resolved", "job:progress")

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, asyncio.Queue[dict]] = defaultdict(asyncio.Queue)
        for name in self.EVENTS:
            self.client.on(name, self._queue(name))

    def _queue(self, name: str) -> Any:
        async def handler(data: dict) -> None:
            await self.received[name].put(data)

        return handler

    async def connect(self, base_url: str, **kwargs: Any) -> Listener:
        kwargs.setdefault("transports", ["websocket"])
        await self.client.connect(base_url, socketio_path="ws", wait_timeout=10, **kwargs)
        return self

    async def next(self, name: str, timeout: float = 15) -> dict:
        return await asyncio.wait_for(self.received[name].get(), timeout)

    async def subscribe(self, **data: str) -> dict:
        ack: dict = await self.client.call("subscribe", data, timeout=10)
        return ack


@pytest.fixture
async def listeners() -> AsyncIterator[Any]:
    made: list[Listener] = []

    async def make(base_url: str, **kwargs: Any) -> Listener:
        listener = Listener()
        made.append(listener)
        return await listener.connect(base_url, **kwargs)

    yield make
    for listener in made:
        await listener.client.disconnect()


@pytest.fixture
def server(server_factory: Any, settings_factory: Any) -> ServerProcess:
    server: ServerProcess = server_factory(settings_factory())
    return server


async def _admin(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    return token, {"Authorization": f"Bearer {token}"}


async def _building_with_sensor(
    client: httpx.AsyncClient, headers: dict, kind: str, unit: str
) -> tuple[str, str]:
    building = await client.post(f"{BASE}/buildings", json={"name": "Bad"}, headers=headers)
    building_id = building.json()["data"]["id"]
    sensor = await client.post(
        f"{BASE}/buildings/{building_id}/sensors",
        json={"name": "Hauptzähler", "kind": kind, "unit": unit},
        headers=headers,
    )
    return building_id, sensor.json()["data"]["id"]


async def test_connections_are_refused_while_websocket_is_turned_off(
    server_factory: Any, settings_factory: Any
) -> None:
    """WEBSOCKET_ENABLED, a switch of the seed's, was not read: clients connected."""
    server = server_factory(settings_factory(), WEBSOCKET_ENABLED="false")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, headers = await _admin(client)
        # Only Socket.IO is off: the HTTP API answers.
        assert (await client.get(f"{BASE}/buildings", headers=headers)).status_code == 200
    refused = socketio.AsyncClient(reconnection=False)
    reasons: list[Any] = []

    async def on_connect_error(data: Any) -> None:
        reasons.append(data)

    refused.on("connect_error", on_connect_error)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(
            server.base_url,
            socketio_path="ws",
            transports=["websocket"],
            auth={"token": token},
            wait_timeout=10,
        )
    assert reasons == [
        {"message": "Socket.IO is turned off on this server (WEBSOCKET_ENABLED=false)"}
    ]


async def test_no_building_room_while_citypulse_is_turned_off(
    server_factory: Any, settings_factory: Any, listeners: Any
) -> None:
    server = server_factory(settings_factory(), CITYPULSE_ENABLED="false")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, _ = await _admin(client)
    listener = await listeners(server.base_url, auth={"token": token})
    assert await listener.subscribe(buildingId="any") == {
        "ok": False,
        "error": "CityPulse is turned off on this server (CITYPULSE_ENABLED=false)",
    }


async def test_connect_requires_a_valid_token(server: ServerProcess, listeners: Any) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, headers = await _admin(client)
        created = await client.post("/api/v1/api-keys", json={"name": "socket"}, headers=headers)
    for kwargs in (
        {},
        {"auth": {"token": "not-a-jwt"}},
        {"auth": {"token": token[:-4] + "AAAA"}},
        {"auth": {"token": SHARED_API_KEY}},
    ):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await listeners(server.base_url, **kwargs)
    assert created.status_code == 201, created.text
    key = created.json()["data"]["key"]  # an API key is fine in auth, never in the URL
    with pytest.raises(socketio.exceptions.ConnectionError):
        await listeners(f"{server.base_url}?access_token={key}")
    assert (await listeners(server.base_url, auth={"token": key})).client.connected
    by_auth = await listeners(server.base_url, auth={"token": token})
    # Browsers start with long-polling: the HTTP transport works through the mount too.
    by_query = await listeners(f"{server.base_url}?access_token={token}")
    # Browsers start with long-polling: the Engine.IO handshake answers over plain HTTP too.
    # (Not through the python client: its polling disconnect waits out a 30 s long-poll.)
    handshake = httpx.get(server.base_url + "/ws/", params={"EIO": "4", "transport": "polling"})
    assert handshake.status_code == 200 and handshake.text.startswith('0{"sid"')
    assert by_auth.client.connected and by_query.client.connected
    metrics = httpx.get(server.base_url + "/metrics").text
    assert "vpsapi_citypulse_socketio_connections" in metrics


async def test_websocket_a_slash_short_of_the_mount(server: ServerProcess) -> None:
    """socket.io-client with `addTrailingSlash: false` asks for `/ws`, not `/ws/`: a
    WebSocket cannot follow a redirect, so the slash is added in place."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, _ = await _admin(client)
    url = server.base_url.replace("http", "ws", 1) + "/ws"
    query = f"?EIO=4&transport=websocket&access_token={token}"
    async with connect(url + query, open_timeout=10) as socket:
        opened = await asyncio.wait_for(socket.recv(), 10)
    assert isinstance(opened, str) and opened.startswith('0{"sid"')


async def test_building_room_receives_readings_energy_and_alerts(
    server: ServerProcess, listeners: Any
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, headers = await _admin(client)
        building_id, sensor_id = await _building_with_sensor(client, headers, "electricity", "kW")
        listener = await listeners(server.base_url, auth={"token": token})
        dashboard = await listeners(
            server.base_url,
            auth={"token": token},
            headers={"X-Frontend-Source": "CityPulse"},
        )

        assert await listener.subscribe(buildingId="nope") == {
            "ok": False,
            "error": "Building not found",
        }
        assert (await listener.client.call("subscribe", "junk", timeout=10))["ok"] is False
        assert await listener.subscribe(buildingId=building_id) == {
            "ok": True,
            "room": f"building:{building_id}",
        }

        rule = await client.post(
            f"{BASE}/alerts/rules",
            json={"sensorId": sensor_id, "name": "Last", "condition": "above", "threshold": 100},
            headers=headers,
        )
        assert rule.status_code == 201
        url = f"{BASE}/sensors/{sensor_id}/readings"
        batch = {
            "readings": [
                {"timestamp": _iso(T0), "value": 40.0},
                {"timestamp": _iso(T0 + timedelta(minutes=15)), "value": 150.0},
            ]
        }
        assert (await client.post(url, json=batch, headers=headers)).status_code == 201

        reading = await listener.next("sensor:reading")
        assert reading == {
            "buildingId": building_id,
            "sensorId": sensor_id,
            "kind": "electricity",
            "unit": "kW",
            "count": 2,
            "timestamp": _iso(T0 + timedelta(minutes=15)),  # as REST writes it: Z, not +00:00
            "value": 150.0,
        }
        energy = await listener.next("energy:update")
        assert energy["buildingId"] == building_id and energy["powerKw"] == 150.0
        assert energy["timestamp"] == _iso(T0 + timedelta(minutes=15))
        opened = await listener.next("alert:opened")
        assert opened["triggerValue"] == 150.0 and opened["status"] == "open"
        # The citypulse frontend room gets alerts of every building without subscribing.
        assert (await dashboard.next("alert:opened"))["id"] == opened["id"]

        back = {"timestamp": _iso(T0 + timedelta(minutes=30)), "value": 20.0}
        assert (await client.post(url, json=back, headers=headers)).status_code == 201
        resolved = await listener.next("alert:resolved")
        assert resolved["id"] == opened["id"] and resolved["resolvedBy"] == "system"

        # A rejected request emits nothing: the next event is the one after it.
        bad = await client.post(url, json={"timestamp": "yesterday", "value": 1}, headers=headers)
        assert bad.status_code == 422
        ok = {"timestamp": _iso(T0 + timedelta(minutes=45)), "value": 21.0}
        await client.post(url, json=ok, headers=headers)
        assert (await listener.next("sensor:reading"))["value"] == 20.0
        assert (await listener.next("sensor:reading"))["value"] == 21.0


async def test_ids_no_url_could_carry_are_refused_in_the_ack(
    server: ServerProcess, listeners: Any
) -> None:
    """A NUL or an unpaired surrogate in an id got no ack at all (the client waited forever)
    and an error with a traceback in the log (PostgreSQL cannot compare such text); an
    unsubscribe answered ok. As in a URL path, they are a validation failure."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, _ = await _admin(client)
    listener = await listeners(server.base_url, auth={"token": token})
    nul = "must not contain NUL characters (\\u0000)"
    surrogate = "must not contain unpaired surrogates (\\ud800-\\udfff)"
    for event, data, error in (
        ("subscribe", {"buildingId": "a\x00b"}, f"buildingId {nul}"),
        ("subscribe", {"jobId": "a\x00b"}, f"jobId {nul}"),
        ("subscribe", {"buildingId": "\ud800"}, f"buildingId {surrogate}"),
        ("subscribe", {"jobId": "x\udfff"}, f"jobId {surrogate}"),
        ("unsubscribe", {"buildingId": "a\x00b"}, f"buildingId {nul}"),
    ):
        ack = await listener.client.call(event, data, timeout=10)
        assert ack == {"ok": False, "error": error}, (event, data)
    # No data at all, or more than one argument, is answered too (it was a TypeError).
    assert (await listener.client.call("subscribe", timeout=10))["ok"] is False
    assert (await listener.client.call("unsubscribe", ("a", "b"), timeout=10))["ok"] is False
    logged = server.log_path.read_text()
    assert '"level":"error"' not in logged and "Traceback" not in logged


async def test_job_progress_for_the_owner(
    server_factory: Any, settings_factory: Any, listeners: Any
) -> None:
    server = server_factory(settings_factory(), JOBS_INPROCESS_WORKERS="true")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        token, headers = await _admin(client)
        submitted = await client.post(
            "/api/jobs",
            json={"processingType": "type1", "data": [{"id": i} for i in range(3)]},
            headers=headers,
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["jobId"]
        listener = await listeners(server.base_url, auth={"token": token})
        assert await listener.subscribe(jobId="job_unknown") == {
            "ok": False,
            "error": "Job not found",
        }
        assert await listener.subscribe(jobId=job_id) == {"ok": True, "jobId": job_id}
        deadline = time.monotonic() + 30
        while True:
            event = await listener.next(
                "job:progress", timeout=max(0.1, deadline - time.monotonic())
            )
            assert event["jobId"] == job_id
            if event["status"] == "COMPLETED":
                assert event["progress"] == 100
                break

        # Another user cannot follow the admin's job.
        email = f"viewer-{time.monotonic_ns()}@example.com"
        created = await client.post(
            "/api/v1/users",
            json={"email": email, "password": "viewer-password-1", "role": "user"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        other = (await login(client, email, "viewer-password-1"))["accessToken"]
        stranger = await listeners(server.base_url, auth={"token": other})
        assert (await stranger.subscribe(jobId=job_id))["ok"] is False


async def test_event_reaches_a_client_on_another_process(
    backend: Any, server_factory: Any, settings_factory: Any, listeners: Any
) -> None:
    if not backend.scaleout:
        pytest.skip("needs Redis + PostgreSQL (VPSAPI_TEST_BACKEND=scaleout)")
    settings = settings_factory()
    process_a, process_b = server_factory(settings), server_factory(settings)
    async with httpx.AsyncClient(base_url=process_b.base_url) as client:
        token, headers = await _admin(client)
        building_id, sensor_id = await _building_with_sensor(client, headers, "co2", "ppm")
        listener = await listeners(process_a.base_url, auth={"token": token})
        assert (await listener.subscribe(buildingId=building_id))["ok"]
        # Process A's Redis listener starts with its first client: post until it hears one.
        for attempt in range(20):
            reading = {"timestamp": _iso(T0 + timedelta(minutes=attempt)), "value": 400.0}
            response = await client.post(
                f"{BASE}/sensors/{sensor_id}/readings", json=reading, headers=headers
            )
            assert response.status_code == 201
            try:
                event = await listener.next("sensor:reading", timeout=1)
            except TimeoutError:
                continue
            assert event["sensorId"] == sensor_id and event["buildingId"] == building_id
            break
        else:
            pytest.fail("no sensor:reading reached the client on the other process")
