"""Database checks made at start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

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
