from __future__ import annotations

from typing import Any

import httpx


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
