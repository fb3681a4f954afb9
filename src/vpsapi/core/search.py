"""Cross-module search: each module registers providers for the kinds it owns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, or_, true
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


def text_matches(query: str, *columns: Any) -> ColumnElement[bool]:
    """Any of `columns` contains `query`, case-insensitively, `%` and `_` taken as written;
    no query matches every row (without a `LIKE '%%'` the database would test on each)."""
    if not query:
        return true()
    return or_(*(column.icontains(query, autoescape=True) for column in columns))


class SearchProvider(Protocol):
    kind: str

    async def search(
        self, session: AsyncSession, principal: Principal, query: str, limit: int
    ) -> list[SearchHit]:
        """Hits for `query` among what `principal` may see, at most `limit`; an empty
        query matches everything they may see (see `text_matches`)."""
        ...
