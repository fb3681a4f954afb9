"""Database engine, sessions and migrations: the one way to reach the database."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import structlog
from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, String, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from vpsapi.config import Settings, SettingsError
from vpsapi.core.errors import AppError, BadRequest, Conflict, ServiceUnavailable

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

log = structlog.get_logger("vpsapi.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class IdMixin:
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# A pooled connection used this recently is handed out without a liveness ping (as
# HikariCP's aliveBypassWindowMs): under load every checkout skips the ping's three round
# trips, while a connection idle long enough to have lost its server is still checked.
ALIVE_BYPASS_SECONDS = 1.0


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


class Database:
    """Owns the engine and the session factory for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.effective_database_url
        kwargs: dict[str, Any] = {}
        if settings.is_sqlite:
            settings.ensure_data_dir()
            kwargs = {"connect_args": {"timeout": 30}}
        else:
            kwargs.update(
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
                pool_timeout=settings.database_pool_timeout,
                connect_args={"timeout": 5, "command_timeout": 30},
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if settings.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine, "checkin", _note_checkin)
            event.listen(self.engine.sync_engine, "checkout", self._ping_if_idle)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Same pool, no BEGIN/COMMIT: every statement commits on its own. Under READ
        # COMMITTED a statement sees the same rows either way, so reads lose nothing and
        # save two round trips.
        self.autocommit_sessionmaker = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    def _ping_if_idle(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any
    ) -> None:
        if time.monotonic() - record.info.get("checked_in_at", 0.0) < ALIVE_BYPASS_SECONDS:
            return
        try:
            self.engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (or a new) one.
            raise DisconnectionError(str(exc)) from exc

    @asynccontextmanager
    async def session(self, *, autocommit: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error. With
        `autocommit`, each statement commits by itself: for work that only reads, or whose
        writes stand alone (a last-seen touch)."""
        # SQLite starts no transaction for a read anyway, and switching its isolation level
        # would cost a thread hop each way.
        use_autocommit = autocommit and not self.settings.is_sqlite
        maker = self.autocommit_sessionmaker if use_autocommit else self.sessionmaker
        async with maker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=3)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def warn_if_autovacuum_off(self) -> None:
        """Say at start when PostgreSQL will never vacuum our tables. Each job row is
        written several times, and without autovacuum the dead versions pile up: in a
        five-minute soak every query slowed as they did (status p99 79 ms against 27 ms
        with it) and PostgreSQL's CPU doubled. A warning only: the server still starts."""
        if self.settings.is_sqlite:
            return
        async with self.engine.connect() as conn:
            setting = (await conn.execute(text("SHOW autovacuum"))).scalar()
        if setting == "off":
            log.warning(
                "postgresql_autovacuum_off",
                hint="set autovacuum = on in postgresql.conf (PostgreSQL's default); the "
                "jobs table is update-heavy and slows down without it",
            )

    async def migrate(self) -> None:
        """Bring the schema to the newest revision, one process at a time."""
        async with self.engine.connect() as conn:
            if not self.settings.is_sqlite:
                # Several `serve` processes may start together: one migrates, others wait.
                await conn.execute(text("SELECT pg_advisory_lock(74631001)"))
            try:
                with self._file_lock():
                    await conn.run_sync(run_migrations)
                await conn.commit()
            except BaseException:
                # Nothing half-done is kept, and the unlock below runs in a transaction of
                # its own (in a failed one it would fail too, hiding the migration's error).
                await conn.rollback()
                raise
            finally:
                if not self.settings.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_unlock(74631001)"))
                    await conn.commit()

    async def check_schema(self) -> None:
        """Refuse a schema this vpsapi's migrations have not brought up to date (with
        AUTO_MIGRATE=false nothing else would, and the first query would fail instead)."""
        async with self.engine.connect() as conn:
            await conn.run_sync(check_schema)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        if not self.settings.is_sqlite:
            yield
            return
        lock_path = self.settings.ensure_data_dir() / ".migrate.lock"
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option(
        "script_location", str(Path(__file__).resolve().parent.parent / "migrations")
    )
    cfg.attributes["connection"] = connection
    return cfg


def run_migrations(connection: Connection) -> None:
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config(connection)
    try:
        command.upgrade(config, "heads")
    except CommandError as exc:
        current = _applied_revisions(connection)
        if unknown := sorted(current - _known_revisions(_scripts(config))):
            # A downgrade of the program, not of the data: alembic's own words are a
            # traceback that names a revision and no way out.
            raise SettingsError(
                f"The database was upgraded by a newer vpsapi (revision {', '.join(unknown)}, "
                "unknown to this one): run that version again, or restore the backup taken "
                "before the upgrade. AUTO_MIGRATE=false starts this one as it is, at your risk."
            ) from exc
        raise


def check_schema(connection: Connection) -> None:
    current = _applied_revisions(connection)
    if not current:
        raise SettingsError(
            "The database has no schema yet and AUTO_MIGRATE=false: run `vpsapi migrate` first"
        )
    scripts = _scripts(alembic_config(connection))
    if current - _known_revisions(scripts):
        return  # a newer vpsapi's: started as it is, at the operator's risk (run_migrations)
    if behind := sorted(set(scripts.get_heads()) - current):
        raise SettingsError(
            f"The database's schema is older than this vpsapi ({', '.join(behind)} not applied) "
            "and AUTO_MIGRATE=false: run `vpsapi migrate` first"
        )


def _applied_revisions(connection: Connection) -> set[str]:
    """The revisions the database was migrated to; none when it never was."""
    from alembic.migration import MigrationContext

    return set(MigrationContext.configure(connection).get_current_heads())


def _scripts(config: Any) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config)


def _known_revisions(scripts: ScriptDirectory) -> set[str]:
    return {script.revision for script in scripts.walk_revisions()}


# SQLSTATEs of text PostgreSQL cannot store (a NUL inside JSON, say): the input's fault.
_UNSTORABLE_TEXT = {"22021", "22P05"}


def _is_unstorable_text(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _UNSTORABLE_TEXT


def get_database(request: Request) -> Database:
    database: Database = request.app.state.db
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent. A GET only
    reads (or touches a timestamp), so it runs without a transaction."""
    try:
        autocommit = request.method in ("GET", "HEAD")
        async with get_database(request).session(autocommit=autocommit) as session:
            yield session
    except (PoolTimeout, OperationalError, DBAPIError, StaleDataError, OSError) as exc:
        answer = database_failure(exc)
        if answer is None:
            raise
        raise answer from exc


# The longest a read done for a client that may leave may take (a busy pool waits
# DATABASE_POOL_TIMEOUT, 5 s by default, first).
SHIELDED_READ_SECONDS = 10


def shielded_read() -> AbstractContextManager[anyio.CancelScope]:
    """Around a read done for a client that may leave (a stream, a socket): its leaving
    lets the read finish (a few ms), as a query cancelled half-way costs its connection
    (SQLite's cannot even be closed then, and says so with a traceback in the log).
    Bounded (TimeoutError), so a stalled database holds neither a gone client nor a
    shutdown."""
    return anyio.fail_after(SHIELDED_READ_SECONDS, shield=True)


def database_failure(exc: BaseException) -> AppError | None:
    """The answer for a database failure the client is not to blame for (or, for text
    the database cannot store, is): None for anything else, a bug to report as such."""
    if isinstance(exc, PoolTimeout):
        # Every connection busy for DATABASE_POOL_TIMEOUT: the server is overloaded. Shed
        # the request with a retryable answer instead of queueing it further.
        return ServiceUnavailable("Server busy, try again shortly", headers={"Retry-After": "1"})
    if (answer := _concurrent_change(exc)) is not None:
        return answer
    if isinstance(exc, DBAPIError):
        if _is_unstorable_text(exc):
            return BadRequest("The request holds text the database cannot store")
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            return None
    elif not (isinstance(exc, OSError) and _is_network_error(exc)):
        return None  # a file the endpoint used, say: not the database's fault
    return ServiceUnavailable("Database unavailable, try again shortly")


# The refusals a concurrent request can cause, as PostgreSQL (SQLSTATE) and SQLite
# (extended result code) name them: a row whose parent it deleted, a duplicate of a row it
# inserted, and PostgreSQL ending one of two transactions that wait for each other (seen
# with a building's cascading delete racing readings stored for its sensor) or that cannot
# be serialised. A NOT NULL or CHECK violation is no race but a bug, left a 500.
_FOREIGN_KEY = "foreign_key"
# Ended by PostgreSQL rather than refused: the request itself is fine, and sent again once
# the other transaction is through it succeeds.
_TRANSIENT = {"deadlock", "serialization"}
_RACES = {
    "23503": _FOREIGN_KEY,
    "23505": "unique",
    "40P01": "deadlock",
    "40001": "serialization",
    "SQLITE_CONSTRAINT_FOREIGNKEY": _FOREIGN_KEY,
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
}


def _race(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "sqlite_errorname", None)
    return _RACES.get(code or "")


def is_deleted_meanwhile(exc: BaseException) -> bool:
    """Whether a write failed for a row a concurrent request deleted after this one read
    it: the parent of a new row (a foreign key violation), or the row updated (an UPDATE
    that matched no row, SQLAlchemy's StaleDataError)."""
    if isinstance(exc, StaleDataError):
        return True
    return isinstance(exc, IntegrityError) and _race(exc) == _FOREIGN_KEY


@contextmanager
def answer_if_deleted_meanwhile(answer: AppError) -> Iterator[None]:
    """Around a write (a flush, an INSERT) made after a lookup: a concurrent request may
    delete the row looked up in between, and the database then refuses the write. The
    request is answered as if the row had been missing at the lookup (`answer`)."""
    try:
        yield
    except (IntegrityError, StaleDataError) as exc:
        if not is_deleted_meanwhile(exc):
            raise
        raise answer from exc


def _concurrent_change(exc: BaseException) -> AppError | None:
    """The net under the races no service answers itself, never a 500. A transaction
    PostgreSQL ended (a deadlock's victim, one it could not serialise) is a 503 to send
    again shortly. A row missing or duplicated is the state of the data: a concurrent
    request may have left it, or the request itself may be the cause and would meet it
    again, so a 409 that promises nothing of sending it again. Logged with what refused
    it, so a race that deserves its own answer (`answer_if_deleted_meanwhile`) gets
    noticed."""
    race = _race(exc) if isinstance(exc, DBAPIError) else None
    if isinstance(exc, StaleDataError):
        refused_by = str(exc)
    elif isinstance(exc, DBAPIError) and race is not None:
        # PostgreSQL's driver names a constraint; SQLite only says which kind it was (and
        # a unique one's columns).
        driver_error = getattr(exc.orig, "__cause__", None)
        refused_by = getattr(driver_error, "constraint_name", None) or str(exc.orig)
    else:
        return None
    log.warning("concurrent_change_refused", refused_by=refused_by)
    if race in _TRANSIENT:
        return ServiceUnavailable(
            "Database busy with a conflicting change, try again shortly",
            headers={"Retry-After": "1"},
        )
    return Conflict("The request conflicts with the current state of a related record")


# What reaching a database server over the network can fail with (the driver raises these
# unwrapped while connecting).
_NETWORK_ERRNOS = {
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTUNREACH,
    errno.EHOSTDOWN,
    errno.ETIMEDOUT,
}


def _is_network_error(exc: OSError) -> bool:
    return (
        isinstance(exc, ConnectionError | TimeoutError | socket.gaierror)
        or exc.errno in _NETWORK_ERRNOS
    )


# Function scope: the transaction commits before the response is sent, so a client that
# reads right after a 201/202 sees the row.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
