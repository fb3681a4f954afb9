"""A consistent dump of the whole database, and the restore of the ops configuration
tables from one.

- SQLite: the online backup API copies the live file page by page under a read lock,
  so the copy is one consistent state even while the service writes.
- PostgreSQL: `pg_dump --format=custom` (one snapshot); restore pipes
  `pg_restore --data-only --table=...` into `psql --single-transaction`, after deleting
  the current rows of those tables in the same transaction.

The online restore brings back the ops configuration tables only (RESTORED_TABLES): the
accounts, API keys, jobs and the audit log of the running service are left as they are
(restoring them under a running service would log users out, drop the job that runs and
rewrite history). The archive still holds the full dump for a disaster recovery
(docs/ops.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from vpsapi.config import Settings
from vpsapi.core.errors import ServiceUnavailable, Unprocessable

# The tables a restore puts back: what the managed nginx files are rendered from.
RESTORED_TABLES = ("ops_nginx_sites", "ops_upstream_pools")
SQLITE_MEMBER = "database/vpsapi.sqlite3"
POSTGRES_MEMBER = "database/vpsapi.pgdump"
COMMAND_TIMEOUT_S = 600


def backend(settings: Settings) -> str:
    return "sqlite" if settings.is_sqlite else "postgresql"


def member_name(settings: Settings) -> str:
    return SQLITE_MEMBER if settings.is_sqlite else POSTGRES_MEMBER


def _sqlite_path(settings: Settings) -> Path:
    url = make_url(settings.effective_database_url)
    if not url.database or url.database == ":memory:":
        raise ServiceUnavailable("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _libpq(settings: Settings) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (that goes in PGPASSWORD, not in argv)."""
    url = make_url(settings.effective_database_url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None, query={})
    return plain.render_as_string(hide_password=False), env


def _tool(settings: Settings, name: str) -> str:
    return str(Path(settings.pg_bin_dir) / name) if settings.pg_bin_dir else name


class CommandFailed(ServiceUnavailable):
    """A PostgreSQL tool ran and exited with an error (its stderr is the message)."""


async def _run(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> bytes:
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise ServiceUnavailable(
            f"{args[0]} was not found: install postgresql-client or set PG_BIN_DIR"
        ) from exc
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), COMMAND_TIMEOUT_S)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise ServiceUnavailable(f"{Path(args[0]).name} did not finish in time") from exc
    if process.returncode != 0:
        raise CommandFailed(
            f"{Path(args[0]).name} failed: {stderr.decode(errors='replace').strip()}"
        )
    return stdout


async def dump(settings: Settings, target: Path) -> dict[str, Any]:
    """Write a consistent dump of the whole database to `target`."""
    if settings.is_sqlite:
        await asyncio.to_thread(_sqlite_dump, _sqlite_path(settings), target)
    else:
        url, env = _libpq(settings)
        await _run(
            [
                _tool(settings, "pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={target}",
                url,
            ],
            env,
        )
    return {"backend": backend(settings), "member": member_name(settings)}


def _sqlite_dump(source: Path, target: Path) -> None:
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)
        finally:
            copy.close()
    finally:
        live.close()


async def restore_tables(settings: Settings, dump_file: Path, kind: str) -> dict[str, int]:
    """Replace the rows of RESTORED_TABLES with the dump's, in one transaction.

    Returns the number of rows restored per table."""
    if kind != backend(settings):
        raise Unprocessable(
            f"this backup holds a database dump for {kind!r}; the service runs on "
            f"{backend(settings)}"
        )
    try:
        if settings.is_sqlite:
            return await asyncio.to_thread(_sqlite_restore, _sqlite_path(settings), dump_file)
        return await _postgres_restore(settings, dump_file)
    except (sqlite3.Error, CommandFailed) as exc:  # a dump that does not restore
        raise Unprocessable(f"the database dump could not be restored: {exc}") from exc


def _columns(db: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [row[1] for row in db.execute(f'PRAGMA "{schema}".table_info("{table}")')]


def _sqlite_restore(live_path: Path, dump_file: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{live_path}", uri=True, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("ATTACH DATABASE ? AS backup", (f"file:{dump_file}?mode=ro",))
        restored: dict[str, int] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in RESTORED_TABLES:
                saved = set(_columns(db, "backup", table))
                if not saved:
                    continue  # the backup predates this table: leave it as it is
                columns = ", ".join(f'"{c}"' for c in _columns(db, "main", table) if c in saved)
                db.execute(f'DELETE FROM main."{table}"')  # noqa: S608 - names are constants
                db.execute(
                    f'INSERT INTO main."{table}" ({columns}) '  # noqa: S608
                    f'SELECT {columns} FROM backup."{table}"'
                )
                restored[table] = db.execute(f'SELECT count(*) FROM main."{table}"').fetchone()[0]  # noqa: S608
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("DETACH DATABASE backup")
        return restored
    finally:
        db.close()


async def _postgres_restore(settings: Settings, dump_file: Path) -> dict[str, int]:
    url, env = _libpq(settings)
    listing = (await _run([_tool(settings, "pg_restore"), "--list", str(dump_file)], env)).decode()
    saved = [
        table
        for table in RESTORED_TABLES
        if re.search(rf" TABLE DATA public {table}( |$)", listing, re.MULTILINE)
    ]
    if not saved:
        return {}
    data = await _run(
        [
            _tool(settings, "pg_restore"),
            "--data-only",
            "--no-owner",
            "--no-privileges",
            *(f"--table={table}" for table in saved),
            "--file=-",
            str(dump_file),
        ],
        env,
    )
    deletes = "".join(f"DELETE FROM public.{table};\n" for table in saved)  # noqa: S608
    counts = " UNION ALL ".join(
        f"SELECT '{table}', count(*) FROM public.{table}"  # noqa: S608 - names are constants
        for table in saved
    )
    script = deletes.encode() + data + f"\n{counts};\n".encode()
    output = await _run(
        [
            _tool(settings, "psql"),
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--field-separator=,",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            "--file=-",
            url,
        ],
        env,
        stdin=script,
    )
    restored = {}
    for line in output.decode().splitlines():
        table, _, count = line.partition(",")
        if table in saved and count.strip().isdigit():
            restored[table] = int(count)
    return restored
