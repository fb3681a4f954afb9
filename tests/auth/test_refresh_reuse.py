"""Refresh-token reuse within JWT_REFRESH_REUSE_SECONDS of its rotation: a retry after a lost
answer, or two tabs refreshing at once, get the login's current tokens instead of having
the login revoked as stolen. Reuse past the window is theft, as with a window of 0."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login
from vpsapi.auth.models import AuthSession
from vpsapi.core.db import utcnow

# The same rotation on seed 001's path and on seed 002's (`refresh_token` in and out).
ROUTES = {
    "v1": ("/api/v1/auth/refresh", "refreshToken", "accessToken"),
    "seed002": ("/api/auth/refresh", "refresh_token", "access_token"),
}


async def _refresh(client: httpx.AsyncClient, route: str, token: str) -> httpx.Response:
    path, field, _ = ROUTES[route]
    return await client.post(path, json={field: token})


def _tokens(route: str, response: httpx.Response) -> tuple[str, str]:
    """(access token, refresh token) of a successful refresh answer."""
    _, field, access_field = ROUTES[route]
    body = response.json()
    data = body["data"] if route == "v1" else body
    return data[access_field], data[field]


async def _me(client: httpx.AsyncClient, access: str) -> int:
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})
    return response.status_code


async def _rotated_long_ago(client: httpx.AsyncClient, seconds: int) -> None:
    """Move every login's last rotation `seconds` into the past."""
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        await session.execute(
            update(AuthSession)
            .where(AuthSession.refreshed_at.is_not(None))
            .values(refreshed_at=utcnow() - timedelta(seconds=seconds))
        )


@pytest.mark.parametrize("route", list(ROUTES))
async def test_reuse_within_the_window_answers_the_same_login(
    client: httpx.AsyncClient, route: str
) -> None:
    first = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["refreshToken"]
    rotated = await _refresh(client, route, first)
    assert rotated.status_code == 200, rotated.text
    access_a, refresh_a = _tokens(route, rotated)

    retried = await _refresh(client, route, first)  # the first answer was lost, say
    assert retried.status_code == 200, retried.text
    access_b, refresh_b = _tokens(route, retried)
    # Both answers belong to one live login: every token works, nothing was revoked.
    assert await _me(client, access_a) == 200
    assert await _me(client, access_b) == 200
    onwards = await _refresh(client, route, refresh_b)
    assert onwards.status_code == 200, onwards.text
    assert await _me(client, _tokens(route, onwards)[0]) == 200
    # refresh_a is the token just rotated, as refresh_b was: still within the window.
    assert (await _refresh(client, route, refresh_a)).status_code == 200


@pytest.mark.parametrize("requests", [2, 5])
async def test_concurrent_refreshes_with_one_token_all_succeed(
    client: httpx.AsyncClient, requests: int
) -> None:
    first = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["refreshToken"]
    answers = await asyncio.gather(*(_refresh(client, "v1", first) for _ in range(requests)))
    assert [answer.status_code for answer in answers] == [200] * requests, [
        answer.text for answer in answers
    ]
    pairs = [_tokens("v1", answer) for answer in answers]
    for access, _ in pairs:
        assert await _me(client, access) == 200
    # One login, one current refresh token: every answer's refresh token carries on.
    for _, refresh in pairs:
        carried_on = await _refresh(client, "v1", refresh)
        assert carried_on.status_code == 200, carried_on.text
        assert await _me(client, _tokens("v1", carried_on)[0]) == 200
    assert (await _refresh(client, "v1", first)).status_code == 401  # two rotations back


async def test_reuse_after_the_window_revokes_the_login(client: httpx.AsyncClient) -> None:
    first = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["refreshToken"]
    rotated = await _refresh(client, "v1", first)
    access, refresh = _tokens("v1", rotated)
    await _rotated_long_ago(client, 31)  # the default window is 30 s

    reuse = await _refresh(client, "v1", first)
    assert reuse.status_code == 401
    assert reuse.json()["message"] == (
        "Refresh token already used; all sessions of this login revoked"
    )
    assert await _me(client, access) == 401
    assert (await _refresh(client, "v1", refresh)).status_code == 401


async def test_the_window_follows_the_setting(make_client: Any) -> None:
    client = await make_client(jwt_refresh_reuse_seconds=120)
    first = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["refreshToken"]
    access, _ = _tokens("v1", await _refresh(client, "v1", first))
    await _rotated_long_ago(client, 90)
    assert (await _refresh(client, "v1", first)).status_code == 200
    await _rotated_long_ago(client, 121)
    assert (await _refresh(client, "v1", first)).status_code == 401
    assert await _me(client, access) == 401


async def test_only_the_token_rotated_last_is_let_through(client: httpx.AsyncClient) -> None:
    first = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["refreshToken"]
    _, second = _tokens("v1", await _refresh(client, "v1", first))
    access, third = _tokens("v1", await _refresh(client, "v1", second))
    assert (await _refresh(client, "v1", second)).status_code == 200
    # `first` was rotated seconds ago too, but a newer token has been rotated since.
    reuse = await _refresh(client, "v1", first)
    assert reuse.status_code == 401
    assert "revoked" in reuse.json()["message"]
    assert await _me(client, access) == 401
    assert (await _refresh(client, "v1", third)).status_code == 401


async def test_logout_ends_the_window(client: httpx.AsyncClient) -> None:
    first = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["refreshToken"]
    access, refresh = _tokens("v1", await _refresh(client, "v1", first))
    assert (await _refresh(client, "v1", first)).status_code == 200
    logout = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert logout.status_code == 200
    for token in (first, refresh):
        refused = await _refresh(client, "v1", token)
        assert refused.status_code == 401
        assert refused.json()["message"] == "Refresh token revoked"
