"""Database checks made at start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from vpsapi.core.logging import APPLICATION_STREAM, stream_path


async def test_start_warns_when_postgresql_never_vacuums(make_client: Any, backend: Any) -> None:
    client = await make_client()
    settings = client.app.state.settings
    log_text = stream_path(settings.effective_log_dir, APPLICATION_STREAM).read_text()
    warned = "postgresql_autovacuum_off" in log_text
    if not backend.scaleout:
        assert not warned, "SQLite has no autovacuum to warn about"
        return
    async with client.app.state.db.engine.connect() as conn:
        setting = (await conn.execute(text("SHOW autovacuum"))).scalar()
    assert warned == (setting == "off")
    assert (await client.get("/health/live")).status_code == 200  # a warning, not a refusal


async def test_a_failed_migration_says_its_own_error_and_frees_the_lock(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the unlock after a failed step ran in the failed transaction: it
    failed too, hiding the step's error and keeping the lock every later start waits on."""
    client = await make_client()
    db = client.app.state.db

    def failing_step(connection: Connection) -> None:
        connection.execute(text("SELECT * FROM no_such_table_in_a_migration"))

    monkeypatch.setattr("vpsapi.core.db.run_migrations", failing_step)
    with pytest.raises(DBAPIError) as caught:
        await db.migrate()
    assert "no_such_table_in_a_migration" in str(caught.value)
    monkeypatch.undo()
    await asyncio.wait_for(db.migrate(), 30)  # the lock is free again
