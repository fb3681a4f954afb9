"""Buildings in the cross-module search (kind "buildings"): every reader may see them."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.models import Building
from vpsapi.core.search import SearchHit
from vpsapi.core.security import Principal


class BuildingSearch:
    kind = "buildings"

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        pattern = f"%{query}%"
        rows = await session.scalars(
            select(Building)
            .where(
                or_(
                    Building.name.ilike(pattern),
                    Building.city.ilike(pattern),
                    Building.address.ilike(pattern),
                )
            )
            .order_by(Building.name, Building.id)
            .limit(limit)
        )
        return [
            SearchHit(
                kind=self.kind,
                id=row.id,
                title=row.name,
                url=f"/api/v1/citypulse/buildings/{row.id}",
                snippet=", ".join(part for part in (row.address, row.city) if part),
            )
            for row in rows
        ]
