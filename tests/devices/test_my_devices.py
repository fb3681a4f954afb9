from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import httpx
import pytest

from support import deleted_right_after, same_answer
from vpsapi.auth import service


async def _register(client: httpx.AsyncClient, user_id: str) -> str:
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": user_id}
    response = await client.post("/api/hello/register", json=body)
    return str(response.json()["virtualId"])


async def test_bind_list_rename_unbind(client: httpx.AsyncClient, create_user: Any) -> None:
    alice, alice_auth = await create_user()
    _, bob_auth = await create_user()
    vid = await _register(client, alice["id"])

    assert (await client.post("/api/devices", json={"vid": vid})).status_code == 401
    # Bob has no pending binding for this device: the user comes from the token.
    stolen = await client.post("/api/devices", json={"vid": vid}, headers=bob_auth)
    assert stolen.status_code == 404

    bound = await client.post(
        "/api/devices",
        json={"vid": vid, "name": "Porch", "password": "cam-secret"},
        headers=alice_auth,
    )
    assert bound.status_code == 201, bound.text
    last_seen = bound.json().pop("lastSeen")
    assert last_seen is not None  # registration counts as a sign of life
    assert bound.json() | {"lastSeen": last_seen} == {
        "vid": vid,
        "name": "Porch",
        "model": None,
        "online": True,
        "lastSeen": last_seen,
        "hasPassword": True,
    }
    assert "cam-secret" not in bound.text
    # Binding twice (the binding was consumed by the first) says what happened.
    again = await client.post("/api/devices", json={"vid": vid}, headers=alice_auth)
    assert (again.status_code, again.json()["error"]) == (409, "Device already bound")

    listed = await client.get("/api/devices", headers=alice_auth)
    assert [d["vid"] for d in listed.json()] == [vid]
    assert (await client.get("/api/devices", headers=bob_auth)).json() == []

    renamed = await client.patch(f"/api/devices/{vid}", json={"name": "Garden"}, headers=alice_auth)
    assert renamed.json()["name"] == "Garden"
    for bad in ({"name": ""}, {"name": "x" * 256}, {}):
        response = await client.patch(f"/api/devices/{vid}", json=bad, headers=alice_auth)
        assert response.status_code == 400
    other = await client.patch(f"/api/devices/{vid}", json={"name": "Mine"}, headers=bob_auth)
    assert other.status_code == 404
    assert (await client.delete(f"/api/devices/{vid}", headers=bob_auth)).status_code == 404

    assert (await client.delete(f"/api/devices/{vid}", headers=alice_auth)).status_code == 204
    assert (await client.get("/api/devices", headers=alice_auth)).json() == []
    assert (await client.delete(f"/api/devices/{vid}", headers=alice_auth)).status_code == 404


async def test_binding_for_a_user_deleted_meanwhile_is_refused_as_their_token_is(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    create_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The user deleted by a concurrent request after their token was checked: refused as
    the token is from then on, not called a device bound already."""
    user, auth = await create_user()
    vid = await _register(client, user["id"])
    deleted_right_after(
        monkeypatch, service, "principal_from_token", "users", lambda caller: caller.user_id
    )
    raced = await client.post("/api/devices", json={"vid": vid}, headers=auth)
    monkeypatch.undo()
    # Rolled back with the failed request: now deleted for good, as the concurrent
    # request did.
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.is_success
    after = await client.get("/api/devices", headers=auth)
    assert after.status_code == 401 and same_answer(raced, after), raced.text


async def test_bind_validation(client: httpx.AsyncClient, create_user: Any) -> None:
    _, auth = await create_user()
    for body in ({}, {"vid": ""}, {"vid": "V" * 65}, {"vid": "VE1", "name": ""}):
        response = await client.post("/api/devices", json=body, headers=auth)
        assert response.status_code == 400, body
    assert (await client.get("/api/devices", headers=auth)).json() == []


async def test_names_take_the_seeds_255_characters(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """Seed 003's `user_devices.device_name VARCHAR(255)`, stored whole on every database."""
    user, auth = await create_user()
    vid = await _register(client, user["id"])
    long_name = "n" * 255
    bound = await client.post("/api/devices", json={"vid": vid, "name": long_name}, headers=auth)
    assert bound.status_code == 201, bound.text
    assert bound.json()["name"] == long_name
    longer = "ü" * 255  # characters, not bytes
    renamed = await client.patch(f"/api/devices/{vid}", json={"name": longer}, headers=auth)
    assert renamed.status_code == 200, renamed.text
    assert [d["name"] for d in (await client.get("/api/devices", headers=auth)).json()] == [longer]
    too_long = await client.patch(f"/api/devices/{vid}", json={"name": "n" * 256}, headers=auth)
    assert too_long.status_code == 400
    assert "255 characters" in too_long.text
    other = await _register(client, user["id"])
    refused = await client.post(
        "/api/devices", json={"vid": other, "name": "n" * 256}, headers=auth
    )
    assert refused.status_code == 400
    assert "255 characters" in refused.text


async def test_search_is_owner_scoped(client: httpx.AsyncClient, create_user: Any) -> None:
    alice, alice_auth = await create_user()
    _, bob_auth = await create_user()
    vid = await _register(client, alice["id"])
    bound = await client.post(
        "/api/devices", json={"vid": vid, "name": "Front_door 100%"}, headers=alice_auth
    )
    assert bound.status_code == 201
    params = {"q": "door 100%", "kind": "devices"}
    mine = await client.get("/api/v1/search", params=params, headers=alice_auth)
    assert mine.status_code == 200, mine.text
    assert [r["id"] for r in mine.json()["data"]["results"]] == [vid]
    theirs = await client.get("/api/v1/search", params=params, headers=bob_auth)
    assert theirs.json()["data"]["results"] == []
    wildcard = await client.get(
        "/api/v1/search", params={"q": "_", "kind": "devices"}, headers=alice_auth
    )
    assert [r["id"] for r in wildcard.json()["data"]["results"]] == [vid]
    nothing = await client.get(
        "/api/v1/search", params={"q": "%x", "kind": "devices"}, headers=alice_auth
    )
    assert nothing.json()["data"]["results"] == []


async def _register_device(client: httpx.AsyncClient, real_id: str, user_id: str) -> str:
    body = {"realDeviceId": real_id, "userId": user_id}
    response = await client.post("/api/hello/register", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["virtualId"])


async def test_another_accounts_device_is_shared_only_with_its_password(
    client: httpx.AsyncClient, create_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone who learned a camera's real id (`/api/vuid` tells it) can send its
    registration naming themselves: that alone must not make them an owner of its clips."""
    alice, alice_auth = await create_user()
    bob, bob_auth = await create_user()
    real_id = "REAL" + secrets.token_hex(8).upper()
    vid = await _register_device(client, real_id, alice["id"])
    bound = await client.post(
        "/api/devices", json={"vid": vid, "password": "cam-secret"}, headers=alice_auth
    )
    assert bound.status_code == 201

    for password in (None, "guess"):
        assert await _register_device(client, real_id, bob["id"]) == vid
        body = {"vid": vid} if password is None else {"vid": vid, "password": password}
        with caplog.at_level(logging.WARNING):
            taken = await client.post("/api/devices", json=body, headers=bob_auth)
        assert taken.status_code == 409, taken.text
        assert taken.json()["error"] == "Device bound to another account"
        # Told to fail2ban as a wrong sign-in is, without the password tried.
        refused = [r for r in caplog.records if "device_share_refused" in r.getMessage()]
        assert refused and "guess" not in refused[-1].getMessage()
        assert (await client.get("/api/devices", headers=bob_auth)).json() == []
        urls = await client.post(
            "/api/cloud/videos/urls",
            json={
                "deviceId": vid,
                "startTime": "2026-01-01T00:00:00Z",
                "endTime": "2026-01-02T00:00:00Z",
            },
            headers=bob_auth,
        )
        assert urls.status_code == 403

    # Whoever has the camera password (a household) shares it.
    shared = await client.post(
        "/api/devices", json={"vid": vid, "password": "cam-secret"}, headers=bob_auth
    )
    assert shared.status_code == 201, shared.text
    assert [d["vid"] for d in (await client.get("/api/devices", headers=bob_auth)).json()] == [vid]

    # Once its owners removed it, a device is free to bind again (sold, given away).
    carol, carol_auth = await create_user()
    for auth in (alice_auth, bob_auth):
        assert (await client.delete(f"/api/devices/{vid}", headers=auth)).status_code == 204
    assert await _register_device(client, real_id, carol["id"]) == vid
    mine = await client.post("/api/devices", json={"vid": vid}, headers=carol_auth)
    assert mine.status_code == 201, mine.text


async def test_two_accounts_binding_at_once_make_one_owner(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """Two accounts with a live binding of the same camera, adding it at the same moment:
    the second must meet the first's ownership (and its camera password) as it would a
    moment later, not both pass the check before either is written."""
    alice, alice_auth = await create_user()
    bob, bob_auth = await create_user()
    for _ in range(10):
        real_id = "REAL" + secrets.token_hex(8).upper()
        vid = await _register_device(client, real_id, alice["id"])
        assert await _register_device(client, real_id, bob["id"]) == vid
        answers = await asyncio.gather(
            client.post(
                "/api/devices", json={"vid": vid, "password": "cam-secret"}, headers=alice_auth
            ),
            client.post("/api/devices", json={"vid": vid}, headers=bob_auth),
        )
        assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 409)
        assert refused.json()["error"] == "Device bound to another account"
        owners = [
            vid in {d["vid"] for d in (await client.get("/api/devices", headers=auth)).json()}
            for auth in (alice_auth, bob_auth)
        ]
        assert owners == [a.status_code == 201 for a in answers]
