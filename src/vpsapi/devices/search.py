"""Search provider: the caller's own devices by name, VID or model."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.core.search import SearchHit
from vpsapi.core.security import Principal
from vpsapi.devices.models import Device, UserDevice


def _like(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DeviceSearch:
    kind = "devices"

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        if principal.user_id is None:
            return []
        pattern = _like(query)
        rows = await session.execute(
            select(UserDevice, Device)
            .join(Device, Device.id == UserDevice.device_id)
            .where(
                UserDevice.user_id == principal.user_id,
                or_(
                    UserDevice.name.ilike(pattern, escape="\\"),
                    Device.virtual_id.ilike(pattern, escape="\\"),
                    Device.model.ilike(pattern, escape="\\"),
                ),
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
