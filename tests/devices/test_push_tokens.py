from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import deleted_right_after, same_answer
from vpsapi.auth import service


async def test_push_token_register_and_delete(client: httpx.AsyncClient, create_user: Any) -> None:
    _, alice = await create_user()
    _, bob = await create_user()
    token = {"token": "fcm-token-abc", "platform": "fcm"}
    assert (await client.post("/api/push/tokens", json=token)).status_code == 401
    assert (await client.post("/api/push/tokens", json=token, headers=alice)).status_code == 204
    # Registering again is idempotent.
    assert (await client.post("/api/push/tokens", json=token, headers=alice)).status_code == 204
    for bad in ({}, {"token": ""}, {"token": "t", "platform": "sms"}):
        response = await client.post("/api/push/tokens", json=bad, headers=alice)
        assert response.status_code == 400, bad
    body = {"token": "fcm-token-abc"}
    not_bobs = await client.request("DELETE", "/api/push/tokens", json=body, headers=bob)
    assert not_bobs.status_code == 404
    deleted = await client.request("DELETE", "/api/push/tokens", json=body, headers=alice)
    assert deleted.status_code == 204
    again = await client.request("DELETE", "/api/push/tokens", json=body, headers=alice)
    assert again.status_code == 404


async def test_a_token_of_a_user_deleted_meanwhile_is_refused_as_their_token_is(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    create_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The user deleted by a concurrent request after their token was checked: refused as
    the token is from then on (the push token was silently not stored, with a 204)."""
    user, auth = await create_user()
    deleted_right_after(
        monkeypatch, service, "principal_from_token", "users", lambda caller: caller.user_id
    )
    token = {"token": "fcm-token-gone", "platform": "fcm"}
    raced = await client.post("/api/push/tokens", json=token, headers=auth)
    monkeypatch.undo()
    # Rolled back with the failed request: now deleted for good, as the concurrent
    # request did.
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.is_success
    after = await client.post("/api/push/tokens", json=token, headers=auth)
    assert after.status_code == 401 and same_answer(raced, after), raced.status_code


async def test_alarm_without_a_configured_provider_notifies_nobody(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    alice, auth = await create_user()
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": alice["id"]}
    vid = (await client.post("/api/hello/register", json=body)).json()["virtualId"]
    assert (await client.post("/api/devices", json={"vid": vid}, headers=auth)).status_code == 201
    token = {"deviceType": "android", "token": "fcm-token-nobody-sends"}
    assert (await client.post("/api/push/tokens", json=token, headers=auth)).status_code == 204
    event = await client.post(f"/api/devices/{vid}/events", json={"alarmType": "motion"})
    assert event.status_code == 202
    assert event.json() == {"success": True, "notifications": 0}


async def test_missing_provider_key_file_stops_the_start(make_client: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await make_client(fcm_credentials_file=tmp_path / "no-such-service-account.json")
