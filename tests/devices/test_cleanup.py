from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
from sqlalchemy import select, update

from vpsapi.core.db import utcnow
from vpsapi.devices import service
from vpsapi.devices.models import DeviceBinding


async def test_expired_bindings_are_hidden_then_removed(client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    expired_user, live_user = "exp" + secrets.token_hex(4), "live" + secrets.token_hex(4)
    for user in (expired_user, live_user):
        body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": user}
        assert (await client.post("/api/hello/register", json=body)).status_code == 200
    async with app.state.db.session() as session:
        await session.execute(
            update(DeviceBinding)
            .where(DeviceBinding.user_id == expired_user)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    query = await client.post("/api/hello/query", json={"key": f"{expired_user}_binding"})
    assert query.status_code == 404

    # The app's own sweep (at start, then hourly) may run first: either way the row goes.
    async with app.state.db.session() as session:
        assert await service.delete_expired_bindings(session) in (0, 1)
    async with app.state.db.session() as session:
        assert await service.delete_expired_bindings(session) == 0
        left = await session.scalars(select(DeviceBinding.user_id))
        assert set(left) == {live_user}
    live = await client.post("/api/hello/query", json={"key": f"{live_user}_binding"})
    assert live.status_code == 200
