"""First start: the schema migrated and the first admin created.

Apart from the app so that CLI commands can prepare the database without importing
every module's routes (about half of a command's start-up time).
"""

from __future__ import annotations

import sys

from vpsapi.auth import service as auth_service
from vpsapi.config import Settings
from vpsapi.core.db import Database


def announce_admin_password(password: str, settings: Settings) -> None:
    """Shown once on the console (not in the log stream) on the very first start."""
    path = (settings.data_dir / "admin-password").resolve()
    print(
        "\n  First start: created admin user "
        f"{settings.admin_email!r} with password:\n\n      {password}\n\n"
        f"  (also saved to {path}, mode 0600; change it with "
        "`vpsapi users set-password`)\n",
        file=sys.stderr,
        flush=True,
    )


async def prepare_database(db: Database, settings: Settings) -> None:
    """Migrate (with AUTO_MIGRATE=false: check it was) and create the first admin."""
    if settings.auto_migrate:
        await db.migrate()
    else:
        await db.check_schema()
    async with db.session() as session:
        password = await auth_service.bootstrap_admin(session, settings)
    if password:
        announce_admin_password(password, settings)
