"""Buildings in the cross-module search (kind "buildings"): every reader may see them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.models import Building
from vpsapi.core.search import SearchHit, text_matches
from vpsapi.core.security import Principal


class BuildingSearch:
    kind = "buildings"

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        rows = await session.scalars(
            select(Building)
            .where(text_matches(query, Building.name, Building.city, Building.address))
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
