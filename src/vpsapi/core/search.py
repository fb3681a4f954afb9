"""Cross-module search: each module registers providers for the kinds it owns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.core.security import Principal


@dataclass(frozen=True)
class SearchHit:
    kind: str
    id: str
    title: str
    url: str
    snippet: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class SearchProvider(Protocol):
    kind: str

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        """Hits for `query` among what `principal` may see, at most `limit`."""
        ...
