from __future__ import annotations

import secrets
from typing import Any

import httpx


async def test_heartbeat_token_and_offline(make_client: Any) -> None:
    client: httpx.AsyncClient = await make_client(
        device_api_token="camera-token", device_offline_after=0, rate_limit_enabled=True
    )
    token = {"x-device-token": "camera-token"}
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": "u9"}
    denied = await client.post("/api/hello/register", json=body)
    assert denied.status_code == 401
    wrong = await client.post("/api/hello/register", json=body, headers={"x-device-token": "x"})
    assert wrong.status_code == 401
    assert (await client.get(f"/api/vuid/{body['realDeviceId']}")).json() == {
        "uid": body["realDeviceId"]
    }
    registered = await client.post("/api/hello/register", json=body, headers=token)
    assert registered.status_code == 200
    assert registered.headers["x-ratelimit-limit"] == "600"
    vid = registered.json()["virtualId"]

    # DEVICE_OFFLINE_AFTER=0: the device counts as offline right after it was seen.
    assert (await client.get(f"/api/vuid/{vid}")).json()["online"] is False
    beat = await client.post(f"/api/devices/{vid}/heartbeat", headers=token)
    assert beat.status_code == 200
    assert beat.json()["success"] is True and beat.json()["lastSeen"].endswith("Z")
    assert (await client.post(f"/api/devices/{vid}/heartbeat")).status_code == 401
    unknown = await client.post("/api/devices/VENOSUCH0000000/heartbeat", headers=token)
    assert unknown.status_code == 404


async def test_online_within_window(client: httpx.AsyncClient) -> None:
    rid = "REAL" + secrets.token_hex(8).upper()
    vid = (
        await client.post("/api/hello/register", json={"realDeviceId": rid, "userId": "u"})
    ).json()["virtualId"]
    assert (await client.post(f"/api/devices/{vid}/heartbeat")).status_code == 200
    assert (await client.get(f"/api/vuid/{vid}")).json()["online"] is True


async def test_a_camera_may_name_itself_by_its_real_id(client: httpx.AsyncClient) -> None:
    """Firmware knows its real id; cloud/videos and service-param take either id, and so do
    the heartbeat and alarm events."""
    rid = "REAL" + secrets.token_hex(8).upper()
    vid = (
        await client.post("/api/hello/register", json={"realDeviceId": rid, "userId": "u"})
    ).json()["virtualId"]
    beat = await client.post(f"/api/devices/{rid}/heartbeat")
    assert beat.status_code == 200, beat.text
    assert (await client.get(f"/api/vuid/{vid}")).json()["online"] is True
    event = await client.post(f"/api/devices/{rid}/events", json={"alarmType": "motion"})
    assert event.status_code == 202, event.text
    too_long = await client.post(f"/api/devices/{'X' * 300}/heartbeat")
    assert too_long.status_code == 404
