"""The migrations build exactly the schema the models describe (a model change without
its migration, or the reverse, fails here on SQLite and on PostgreSQL)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vpsapi.models import metadata


async def test_migrations_match_the_models(make_client: Any) -> None:
    client = await make_client()
    database = client._transport.app.state.db  # type: ignore[attr-defined]
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert differences == []
