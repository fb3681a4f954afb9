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
        rows = await session.scalars(
            select(Building)
            .where(
                or_(  # autoescape: % and _ in the query are plain characters, not wildcards
                    Building.name.icontains(query, autoescape=True),
                    Building.city.icontains(query, autoescape=True),
                    Building.address.icontains(query, autoescape=True),
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
