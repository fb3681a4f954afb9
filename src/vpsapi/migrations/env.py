"""Alembic environment: always driven programmatically with a live connection.

Each domain keeps its own branch (label = domain name) rooted at the core revision,
and `upgrade heads` applies all of them, so domains migrate independently.
"""

from __future__ import annotations

from alembic import context

from vpsapi.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline mode is not supported
    raise RuntimeError("run migrations with `vpsapi migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
