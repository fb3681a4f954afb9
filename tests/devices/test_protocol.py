from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any
from urllib.parse import unquote

import httpx
from sqlalchemy import func, select

from vpsapi.devices.models import Device

VID = re.compile(r"^VE[A-Z0-9]{13}$")


def real_id() -> str:
    return "REAL" + secrets.token_hex(8).upper()


def user_id() -> str:
    return "u" + secrets.token_hex(6)


async def register(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/api/hello/register", json=body)


async def test_register_query_resolve_flow(client: httpx.AsyncClient) -> None:
    rid, uid = real_id(), user_id()
    missing = await client.post("/api/hello/query", json={"key": f"{uid}_binding"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "Binding not found"

    response = await register(client, realDeviceId=rid, userId=uid, model="C1", supplier="VE")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["message"] == "Device registered successfully"
    vid = body["virtualId"]
    assert VID.match(vid)

    query = await client.post("/api/hello/query", json={"key": f"{uid}_binding"})
    assert query.status_code == 200
    value = json.loads(unquote(query.json()["value"]))
    assert value["vuid"] == vid and value["userid"] == uid
    assert value["C2Net"]["Status"] == 1 and value["C2Net"]["FCode"] == 4097
    assert value["R2SVR"]["Status"] == 1 and value["B2SVR"]["TStep"] == 3

    resolved = await client.get(f"/api/vuid/{vid}")
    assert resolved.json() == {"uid": rid, "supplier": "VE", "cluster": None, "online": True}
    unknown = await client.get("/api/vuid/SOMEREALID123")
    assert unknown.json() == {"uid": "SOMEREALID123"}

    again = await register(client, realDeviceId=rid, userId=uid)
    assert again.json()["virtualId"] == vid

    cleared = await client.post("/api/hello/confirm", json={"key": f"{uid}_binding"})
    assert cleared.json() == {"success": True, "message": "Previous binding cleared"}
    gone = await client.post("/api/hello/query", json={"key": f"{uid}_binding"})
    assert gone.status_code == 404


async def test_missing_key_is_400(client: httpx.AsyncClient) -> None:
    for path in ("/api/hello/query", "/api/hello/confirm"):
        for body in ({}, {"key": ""}, {"key": 5}, [1]):
            response = await client.post(path, json=body)
            assert response.status_code == 400
            assert response.json()["error"] == "Missing key parameter"
        too_long = await client.post(path, json={"key": "k" * 301})
        assert too_long.status_code == 400
        assert too_long.json()["error"] == "Invalid key parameter: at most 300 characters"
        raw = await client.post(
            path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert raw.status_code == 400


async def test_register_validation_errors(client: httpx.AsyncClient) -> None:
    response = await register(client, realDeviceId="short", model="x" * 65)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {
        "type": "field",
        "value": "short",
        "msg": "Invalid value",
        "path": "realDeviceId",
        "location": "body",
    } in errors
    assert {"type": "field", "msg": "Invalid value", "path": "userId", "location": "body"} in errors
    assert [e["path"] for e in errors] == ["realDeviceId", "userId", "model"]
    bad_type = await register(client, realDeviceId=123456789012345678, userId=user_id())
    assert bad_type.status_code == 400
    # Present but invalid: only the express-validator list, as the seed's route never
    # gets to its own check.
    assert "error" not in bad_type.json()
    # Nothing was stored for a rejected registration.
    assert (await client.get("/api/vuid/short")).json() == {"uid": "short"}
    # A number beyond a float (read as infinity) is refused, not echoed into a 500.
    huge = await client.post(
        "/api/hello/register",
        content=b'{"realDeviceId": "VSTC123456789ABCDEF", "userId": "u", "supplier": 1e400}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 400, huge.text
    assert huge.json()["errors"] == [
        {
            "type": "field",
            "msg": "a number is out of range (beyond ±1.8e308)",
            "path": "",
            "location": "body",
        }
    ]


async def test_concurrent_registrations(client: httpx.AsyncClient) -> None:
    distinct = await asyncio.gather(
        *(register(client, realDeviceId=real_id(), userId=user_id()) for _ in range(50))
    )
    assert all(r.status_code == 200 for r in distinct), [r.text for r in distinct][:3]
    assert len({r.json()["virtualId"] for r in distinct}) == 50

    rid = real_id()
    same = await asyncio.gather(
        *(register(client, realDeviceId=rid, userId=user_id()) for _ in range(20))
    )
    assert all(r.status_code == 200 for r in same), [r.text for r in same][:3]
    assert len({r.json()["virtualId"] for r in same}) == 1


async def test_register_missing_ids_answer_the_seeds_error_too(client: httpx.AsyncClient) -> None:
    """Seed API #3: `if (!realDeviceId || !userId)` answers `{error: 'Missing required
    parameters'}`; the express-validator list stays alongside."""
    for body in (
        {},
        {"userId": user_id()},
        {"realDeviceId": real_id()},
        {"realDeviceId": "", "userId": user_id()},
        {"realDeviceId": real_id(), "userId": ""},
        {"realDeviceId": real_id(), "userId": None},
    ):
        response = await client.post("/api/hello/register", json=body)
        assert response.status_code == 400, body
        answer = response.json()
        assert answer["error"] == "Missing required parameters", body
        assert answer["errors"] and all(e["msg"] == "Invalid value" for e in answer["errors"])


async def test_query_value_keeps_non_ascii_as_utf8(client: httpx.AsyncClient) -> None:
    """encodeURIComponent(JSON.stringify(...)) in Node: ü is %C3%BC, not an escaped \\u00fc."""
    uid = "j\u00fcrgen-" + secrets.token_hex(3)
    assert (await register(client, realDeviceId=real_id(), userId=uid)).status_code == 200
    query = await client.post("/api/hello/query", json={"key": f"{uid}_binding"})
    assert query.status_code == 200, query.text
    value = query.json()["value"]
    assert f"%22userid%22%3A%22j%C3%BCrgen-{uid[-6:]}%22" in value
    assert "%5Cu" not in value
    assert json.loads(unquote(value))["userid"] == uid


# Bodies every JSON parser must refuse without a 500: a lone UTF-16 surrogate (no store
# can encode it) and nesting deep enough to exhaust a recursive parser.
LONE = "\\ud800"
SURROGATE = (
    f'{{"key":"{LONE}","realDeviceId":"{LONE * 16}","userId":"{LONE}","deviceId":"{LONE}"}}'
).encode()
DEEP = b'{"key":"k","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


async def test_unparseable_bodies_get_each_endpoints_answer(client: httpx.AsyncClient) -> None:
    json_type = {"content-type": "application/json"}
    for raw in (SURROGATE, DEEP):
        for path in ("/api/hello/confirm", "/api/hello/query"):
            response = await client.post(path, content=raw, headers=json_type)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["error"] == "Missing key parameter"
        registered = await client.post("/api/hello/register", content=raw, headers=json_type)
        assert registered.status_code == 400, registered.text
        assert registered.json()["error"] == "Missing required parameters"
        param = await client.post("/api/auth/service-param", content=raw, headers=json_type)
        assert param.status_code == 400, param.text
        assert param.json()["error"] == "Missing deviceId"
    # The refused registrations stored nothing.
    async with client._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert await session.scalar(select(func.count()).select_from(Device)) == 0


async def test_a_nul_in_a_registration_is_refused_in_express_validators_shape(
    client: httpx.AsyncClient,
) -> None:
    """The middleware refuses a NUL anywhere (PostgreSQL cannot store one); the camera
    endpoint documented with express-validator's `{errors: [...]}` answers in that shape."""
    body = {"realDeviceId": real_id() + "\u0000", "userId": user_id()}
    response = await client.post("/api/hello/register", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert set(answer) == {"errors", "requestId"}
    [error] = answer["errors"]
    assert error["type"] == "field" and error["location"] == "body" and error["path"] == ""
    assert "NUL" in error["msg"]
    in_query = await client.post(
        "/api/hello/register?x=%00", json={"realDeviceId": real_id(), "userId": user_id()}
    )
    assert in_query.status_code == 400
    assert in_query.json()["errors"][0]["location"] == "query"
    # Other seed-003 endpoints keep their documented validation body.
    clip = {"deviceId": "VE\u0000", "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    other = await client.post("/api/cloud/videos", json=clip)
    assert other.status_code == 400
    assert other.json()["error"] == "Validation failed" and other.json()["details"]
    async with client._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert await session.scalar(select(func.count()).select_from(Device)) == 0
