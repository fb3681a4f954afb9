"""Search provider: the caller's own devices by name, VID or model."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.core.search import SearchHit, text_matches
from vpsapi.core.security import Principal
from vpsapi.devices.models import Device, UserDevice


class DeviceSearch:
    kind = "devices"

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        if principal.user_id is None:
            return []
        rows = await session.execute(
            select(UserDevice, Device)
            .join(Device, Device.id == UserDevice.device_id)
            .where(
                UserDevice.user_id == principal.user_id,
                text_matches(query, UserDevice.name, Device.virtual_id, Device.model),
            )
            .order_by(UserDevice.name)
            .limit(limit)
        )
        return [
            SearchHit(
                kind=self.kind,
                id=device.virtual_id,
                title=owned.name,
                url=f"/api/devices/{device.virtual_id}",
                snippet=device.model or "",
            )
            for owned, device in rows.tuples()
        ]
