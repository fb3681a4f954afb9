"""`vpsapi` command line: serve, migrate, users, keys, token, config."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Annotated, Any, NoReturn, TypeVar, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.auth.passwords import check_new_password
from vpsapi.config import EVERY_INTERFACE, Settings, SettingsError, get_settings, local_url
from vpsapi.core.errors import AppError
from vpsapi.core.security import Role
from vpsapi.jobs.cli import jobs_app, output_console, run_worker

app = typer.Typer(help="vpsapi: one backend for jobs, VPS ops, devices and smart buildings.")
users_app = typer.Typer(help="Manage users.")
keys_app = typer.Typer(help="Manage API keys.")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")

console = output_console()
err_console = Console(stderr=True)
T = TypeVar("T")


def configuration_error(exc: Exception) -> NoReturn:
    # One line, also in a journal or a pipe (rich would wrap it at 80 columns). A text of
    # ours may hold brackets that are no markup of rich's: escaped, or they would vanish.
    said = _refused_settings(exc) if isinstance(exc, ValidationError) else str(exc)
    err_console.print(f"[red]Configuration error:[/red] {escape(said)}", soft_wrap=True)
    raise typer.Exit(2) from exc


def _refused_settings(exc: ValidationError) -> str:
    """pydantic's report of refused settings in one line, each named by its environment
    variable (`PORT`, not the field `port`), in our words where a check of ours refused
    it; never the value (it may be a secret)."""
    said = []
    for error in exc.errors(include_input=False, include_url=False):
        reason = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
        message = str(reason) if reason is not None else error["msg"]
        said.append(f"{str(error['loc'][0]).upper()}: {message}" if error["loc"] else message)
    return "; ".join(said)


def load_settings() -> Settings:
    try:
        settings = get_settings()
        settings.jwt_signing_key()
    except (SettingsError, ValueError) as exc:
        configuration_error(exc)
    return settings


def run_with_session(fn: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `fn` in one committed transaction, after bringing the schema up to date."""
    from vpsapi.auth.bootstrap import prepare_database
    from vpsapi.core.db import Database

    settings = load_settings()

    async def main() -> T:
        db = Database(settings)
        try:
            await prepare_database(db, settings)
            async with db.session() as session:
                return await fn(session, settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except SettingsError as exc:  # found on the way, e.g. creating the first admin
        configuration_error(exc)
    except AppError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes (WORKERS)")] = None,
) -> None:
    """Start the API server (migrates first unless AUTO_MIGRATE=false)."""
    import uvicorn

    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    settings.ensure_data_dir()
    # Migrated and the first admin created here, once for every process, and a problem
    # (a short ADMIN_PASSWORD, say) is told as such rather than as a failed startup.
    _migrate_once(settings)
    os.environ["AUTO_MIGRATE"] = "false"
    if workers > 1:
        # Several processes share metrics through prometheus-client's multiprocess files,
        # one directory per port: two servers sharing DATA_DIR (`vpsapi@8000` and
        # `vpsapi@8001`) would otherwise wipe and count each other's at start.
        metrics_dir = (settings.data_dir / f"metrics-{port}").resolve()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    url = local_url(host, port)
    where = f"{url} and every other interface" if host in EVERY_INTERFACE else url
    err_console.print(
        f"[bold green]vpsapi[/] listening on {where}  "
        f"(docs: {url}/docs, {workers} process{'es' if workers > 1 else ''}, "
        f"{'SQLite' if settings.is_sqlite else 'PostgreSQL'}"
        f"{', Redis' if settings.redis_url else ''})",
        soft_wrap=True,  # one line also when the output is not a terminal (80 columns)
    )
    if not settings.run_jobs_in_process:
        # Submitted jobs wait for a worker (REDIS_URL, or JOBS_INPROCESS_WORKERS=false).
        err_console.print(
            "jobs are run by `vpsapi worker` processes: start at least one", soft_wrap=True
        )
    # uvicorn drains, then raises the signal again under the handler found before it:
    # this one makes a drained SIGTERM a clean exit (0, as seed 001's `process.exit(0)`
    # after its graceful shutdown), not a death by the signal (143).
    signal.signal(signal.SIGTERM, _exit_after_drain)
    uvicorn.run(
        "vpsapi.app:create_server_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # handled by our middleware with TRUSTED_PROXIES
        server_header=False,  # no software name for scanners
        timeout_graceful_shutdown=settings.shutdown_timeout,
        timeout_keep_alive=75,
        # wsproto takes any Sec-WebSocket-Key; the websockets library refuses one that is
        # not 16 bytes, as the one in seed 002's own curl check of /ws/monitoring.
        ws="wsproto",
    )


def _exit_after_drain(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _migrate_once(settings: Settings) -> None:
    from vpsapi.auth.bootstrap import prepare_database
    from vpsapi.core.db import Database

    async def main() -> None:
        db = Database(settings)
        try:
            await prepare_database(db, settings)
        finally:
            await db.dispose()

    try:
        asyncio.run(main())
    except SettingsError as exc:
        configuration_error(exc)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="jobs run at once (JOBS_WORKERS)")] = None,
) -> None:
    """Run job workers (saq on Redis when REDIS_URL is set, else the SQLite queue)."""
    from vpsapi.core.logging import configure_logging

    settings = load_settings()
    if concurrency is not None:
        settings = settings.model_copy(update={"jobs_workers": concurrency})
    configure_logging(settings)
    _migrate_once(settings)
    run_worker(settings)


@app.command()
def migrate() -> None:
    """Apply database migrations and create the first admin if there is none."""
    from vpsapi.core.logging import configure_logging

    settings = load_settings()
    configure_logging(settings)
    _migrate_once(settings.model_copy(update={"auto_migrate": True}))
    console.print("[green]Database is up to date.[/green]")


@app.command("config")
def show_config() -> None:
    """Print the effective settings, secrets masked."""
    settings = load_settings()
    table = Table("setting", "value")
    for name, value in settings.masked().items():
        table.add_row(name.upper(), "" if value is None else str(value))
    console.print(table)
    for notice in settings.notices:  # as `serve` logs them at start
        err_console.print(f"[yellow]note:[/yellow] {escape(notice)}", soft_wrap=True)


@app.command()
def token(
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key (default: API_KEY setting)")
    ] = None,
) -> None:
    """Print a JWT for an API key, as POST /api/auth/token does."""
    from vpsapi.auth import service
    from vpsapi.core.security import TokenCodec

    async def issue(session: AsyncSession, settings: Settings) -> str:
        codec = TokenCodec(
            settings.jwt_signing_key(),
            settings.jwt_issuer,
            settings.jwt_expires_in,
            settings.jwt_refresh_expires_in,
        )
        return await service.exchange_api_key(session, codec, settings, key, "cli")

    settings = load_settings()
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if not key:
        err_console.print("[red]No API key:[/red] pass --api-key or set API_KEY")
        raise typer.Exit(2)
    print(run_with_session(issue))


def _id_column() -> Column:
    # Whole in any terminal: the other commands take it as written (`keys revoke ID`).
    return Column("id", no_wrap=True, min_width=32)


# ---- users ---------------------------------------------------------------------------


def _role(value: str) -> str:
    if value not in ("admin", "manager", "user"):
        raise typer.BadParameter("role must be admin, manager or user")
    return value


def _new_password(value: str) -> str:
    """The rule of every password set. Checked in the command, not as the option's
    callback: a hidden prompt would hide why it refused the value too."""
    try:
        return check_new_password(value, "password")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@users_app.command("create")
def users_create(
    email: str,
    role: Annotated[str, typer.Option(callback=_role)] = "user",
    username: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Create a user."""
    from vpsapi.auth import service

    _new_password(password)

    async def create(session: AsyncSession, _s: Settings) -> Any:
        return await service.create_user(
            session,
            email=email,
            password=password,
            role=cast(Role, role),
            username=username,
        )

    user = run_with_session(create)
    console.print(f"[green]Created[/green] {user.email} ({user.role}) id={user.id}")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    from vpsapi.auth import service

    async def fetch(session: AsyncSession, _s: Settings) -> Any:
        users, _next = await service.list_users(session, limit=10_000)
        return users

    table = Table(_id_column(), "email", "username", "role", "active", "last login")
    for user in run_with_session(fetch):
        table.add_row(
            user.id,
            user.email,
            user.username,
            user.role,
            str(user.is_active),
            str(user.last_login_at or ""),
        )
    console.print(table)


def _update_user(login: str, **changes: Any) -> Any:
    from vpsapi.auth import service
    from vpsapi.core.errors import NotFound

    async def update(session: AsyncSession, _s: Settings) -> Any:
        user = await service.find_user_by_login(session, login)
        if user is None:
            raise NotFound(f"No user {login!r}")
        return await service.update_user(session, user, **changes)

    return run_with_session(update)


@users_app.command("set-role")
def users_set_role(login: str, role: Annotated[str, typer.Argument(callback=_role)]) -> None:
    """Change a user's role (by email or username)."""
    user = _update_user(login, role=role)
    console.print(f"[green]{user.email}[/green] is now {user.role}")


@users_app.command("set-password")
def users_set_password(
    login: str,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Set a user's password (signs out their sessions)."""
    _new_password(password)
    user = _update_user(login, password=password)
    console.print(f"[green]Password changed[/green] for {user.email}")


# ---- keys ----------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: str,
    user: Annotated[str | None, typer.Option(help="owner (email/username; default: admin)")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Create an API key; the key is printed once."""
    from vpsapi.auth import service
    from vpsapi.core.errors import NotFound

    async def create(session: AsyncSession, settings: Settings) -> tuple[Any, str]:
        owner = await service.find_user_by_login(session, user or settings.admin_username)
        if owner is None:
            raise NotFound(f"No user {user or settings.admin_username!r}")
        return await service.create_api_key(session, owner.id, name, expires_in_days)

    api_key, key = run_with_session(create)
    err_console.print(f"[green]Created[/green] key {api_key.id} ({api_key.name}); store it now:")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (prefixes only)."""
    from vpsapi.auth import service

    async def fetch(session: AsyncSession, _s: Settings) -> Any:
        return await service.list_api_keys(session, None)

    table = Table(_id_column(), "name", "prefix", "owner", "created", "last used", "revoked")
    for key in run_with_session(fetch):
        table.add_row(
            key.id,
            key.name,
            key.prefix + "…",
            key.user_id,
            str(key.created_at),
            str(key.last_used_at or ""),
            str(key.revoked_at or ""),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key."""
    from vpsapi.auth import service

    async def revoke(session: AsyncSession, _s: Settings) -> Any:
        return await service.revoke_api_key(session, key_id, None)

    run_with_session(revoke)
    console.print(f"[green]Revoked[/green] {key_id}")
