from __future__ import annotations

import asyncio
import secrets

import httpx

from vpsapi.config import Settings
from vpsapi.devices.params import ParamKeys


async def _device(client: httpx.AsyncClient) -> tuple[str, str]:
    rid = "REAL" + secrets.token_hex(8).upper()
    response = await client.post(
        "/api/hello/register", json={"realDeviceId": rid, "userId": "u1", "supplier": "VSTC"}
    )
    return rid, response.json()["virtualId"]


async def test_service_param_sealed_and_cached(client: httpx.AsyncClient) -> None:
    rid, vid = await _device(client)
    first = await client.post("/api/auth/service-param", json={"deviceId": vid})
    assert first.status_code == 200, first.text
    param = first.json()["serviceParam"]
    assert rid not in param and "secret" not in param
    by_real = await client.post("/api/auth/service-param", json={"deviceId": [rid]})
    assert by_real.json() == {"serviceParam": param}


async def test_apps_asking_at_once_for_a_new_device_get_one_service_param(
    client: httpx.AsyncClient,
) -> None:
    """Each sealing gives a different text: of requests racing for a device's first
    parameter, one is kept and all of them answer it (seed 003 caches one per device)."""
    _rid, vid = await _device(client)
    answers = await asyncio.gather(
        *(client.post("/api/auth/service-param", json={"deviceId": vid}) for _ in range(10))
    )
    assert {response.status_code for response in answers} == {200}
    params = {response.json()["serviceParam"] for response in answers}
    assert len(params) == 1
    again = await client.post("/api/auth/service-param", json={"deviceId": vid})
    assert again.json()["serviceParam"] in params


async def test_service_param_errors(client: httpx.AsyncClient) -> None:
    for body in (
        {},
        {"deviceId": ""},
        {"deviceId": None},
        {"deviceId": ["a", "b"]},
        {"deviceId": [3]},
        {"deviceId": 3},
        {"deviceId": {"id": "x"}},
        [],
    ):
        response = await client.post("/api/auth/service-param", json=body)
        assert response.status_code == 400
        assert response.json()["error"] == "Missing deviceId"
    # Any other string is looked up, as the seed does: unknown ids are 404 whatever their
    # length (no stored id is longer than 64, so very long ones need no query).
    for device_id in ("VENOSUCHDEVICE1", "D" * 65, ["D" * 255], "D" * 256, "D" * 100_000):
        missing = await client.post("/api/auth/service-param", json={"deviceId": device_id})
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"] == "Device not found"


def test_key_rotation_opens_old_params() -> None:
    old = ParamKeys.from_settings(Settings(device_param_keys="k1:first-secret"))
    token = old.seal({"deviceId": "D"})
    rotated = ParamKeys.from_settings(Settings(device_param_keys="k2:second,k1:first-secret"))
    assert rotated.current == "k2"
    assert rotated.open(token) == {"deviceId": "D"}
    assert rotated.key_id(rotated.seal({"a": 1})) == "k2"
