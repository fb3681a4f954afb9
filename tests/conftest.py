"""Shared fixtures: an app on the embedded default or on PostgreSQL + Redis.

`VPSAPI_TEST_BACKEND=scaleout` runs the suite on the machine's PostgreSQL and Redis
(`TEST_DATABASE_ADMIN_URL`, `TEST_REDIS_URL`), each test run in its own database and
key prefix. Without those servers the run is skipped, except in CI where it fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher, profiles

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    JWT_SECRET,
    SHARED_API_KEY,
    ServerProcess,
    login,
    start_server,
)
from vpsapi.app import create_app
from vpsapi.config import SQLITE_FILE, Settings
from vpsapi.core import security
from vpsapi.core.db import Database

ROOT = Path(__file__).resolve().parent.parent
BACKEND = os.environ.get("VPSAPI_TEST_BACKEND", "embedded")
PG_ADMIN_URL = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@dataclass
class Backend:
    name: str
    database_url: str = ""
    redis_url: str = ""

    @property
    def scaleout(self) -> bool:
        return self.name == "scaleout"


def _reaches_backend(item: pytest.Item) -> bool:
    """Whether a test uses the backend: asks for it, or uses a fixture that does (the
    autouse database emptier aside, which every test has)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return True
    for name, definitions in info.name2fixturedefs.items():
        if name == "backend" and name in info.argnames:
            return True
        if name != "empty_shared_database_for_processes" and any(
            "backend" in definition.argnames for definition in definitions
        ):
            return True
    return False


def _same_on_either_backend(item: pytest.Item) -> bool:
    # Browser tests drive the same static page, whose API calls the API tests cover on
    # PostgreSQL + Redis; they are the slowest tests (a server and a browser each).
    return not _reaches_backend(item) or item.get_closest_marker("browser") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The scale-out run repeats only the tests whose outcome can depend on PostgreSQL and
    Redis; the rest (CLI on its own data directory, deploy files, the console in a browser)
    would run the very same code again, and CI runs both at once on two cores."""
    if BACKEND != "scaleout":
        return
    same_everywhere = [item for item in items if _same_on_either_backend(item)]
    if same_everywhere:
        config.hook.pytest_deselected(items=same_everywhere)
        items[:] = [item for item in items if not _same_on_either_backend(item)]


def _on_postgres(url: str, work: Callable[[Any], Awaitable[None]]) -> None:
    """`await work(connection)` on a fresh asyncpg connection to `url`, from a thread of
    its own: the test's event loop (pytest-asyncio, Playwright) may be running here."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await work(conn)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


def _pg_admin(sql: str) -> None:
    async def execute(conn: Any) -> None:
        await conn.execute(sql)

    _on_postgres(PG_ADMIN_URL, execute)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2's own test profile for in-process apps (server processes keep the real one):
    the production cost is a few hundred ms per hash, paid by nearly every test's admin."""
    cheap = PasswordHasher.from_parameters(profiles.CHEAPEST)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", cheap)
        security._dummy_hash.cache_clear()  # made again with the cheap hasher
        yield
    security._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    if BACKEND != "scaleout":
        yield Backend("embedded")
        return
    missing = [
        name
        for name, url, port in (("PostgreSQL", PG_ADMIN_URL, 5432), ("Redis", REDIS_URL, 6379))
        if not _reachable(url, port)
    ]
    if missing:
        message = (
            f"scale-out run needs {', '.join(missing)} (TEST_DATABASE_ADMIN_URL / TEST_REDIS_URL)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    dbname = f"vpsapi_test_{uuid.uuid4().hex[:10]}"
    _pg_admin(f'CREATE DATABASE "{dbname}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield Backend("scaleout", database_url=f"{base}/{dbname}", redis_url=REDIS_URL)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        _delete_run_keys()


def _delete_run_keys() -> None:
    """Every key of this run's prefixes. A test's own cleanup runs before its server
    processes or background tasks have all stopped, and what they write after it (a job
    queued at the kill, a cache generation) would stay in the machine's Redis, some keys
    for good: every later SCAN, the next runs' cleanups among them, would wade through
    them."""
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"*{RUN_PREFIX}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def _empty_shared_database(database_url: str) -> None:
    async def truncate(conn: Any) -> None:
        await conn.execute("SET lock_timeout = '10s'")  # never hang on a leftover session
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{row["tablename"]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} CASCADE")

    _on_postgres(database_url, truncate)


@pytest.fixture(autouse=True)
def empty_shared_database_for_processes(request: pytest.FixtureRequest, backend: Backend) -> None:
    """A test with real server processes starts on an empty database in the scale-out run,
    as in-process ones do (make_client): another test's leftover jobs would otherwise keep
    this test's workers busy. The servers it starts create the admin again."""
    if backend.scaleout and request.node.get_closest_marker("multiprocess"):
        _empty_shared_database(backend.database_url)


# The Redis key prefixes of one test run (`_delete_run_keys`).
RUN_PREFIX = f"vpsapi-test-{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def redis_prefix() -> str:
    return f"{RUN_PREFIX}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings_factory(tmp_path: Path, backend: Backend, redis_prefix: str) -> Any:
    """Settings for a test app; keyword arguments override."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "data_dir": tmp_path / "data",
            "api_key": SHARED_API_KEY,
            "jwt_secret": JWT_SECRET,
            "admin_password": ADMIN_PASSWORD,
            "rate_limit_enabled": False,
            "log_level": "WARNING",
            "redis_prefix": redis_prefix,
        }
        if backend.scaleout:
            values["database_url"] = backend.database_url
            values["redis_url"] = backend.redis_url
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
async def cleanup_scaleout(backend: Backend, redis_prefix: str) -> AsyncIterator[None]:
    yield
    if backend.scaleout:
        from redis.asyncio import Redis

        redis = Redis.from_url(backend.redis_url)
        keys = [k async for k in redis.scan_iter(match=f"*{redis_prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated embedded database, made once per run: each test app starts from a copy
    instead of running every migration on a new file again."""
    settings = Settings(_env_file=None, environment="test", data_dir=tmp_path_factory.mktemp("db"))  # type: ignore[call-arg]
    settings.ensure_data_dir()

    async def migrate() -> None:
        db = Database(settings)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as thread:  # the session's event loop may be running here
        thread.submit(asyncio.run, migrate()).result()
    return settings.data_dir / SQLITE_FILE


@pytest.fixture
async def make_client(
    settings_factory: Any, backend: Backend, cleanup_scaleout: None, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """Start an app (lifespan included) and return an httpx client for it."""
    stack: list[httpx.AsyncClient] = []

    async def make(**overrides: Any) -> httpx.AsyncClient:
        settings = settings_factory(**overrides)
        database_file = settings.data_dir / SQLITE_FILE
        if not settings.database_url and not database_file.exists():
            settings.ensure_data_dir()
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), database_file)
        if backend.scaleout and not stack:
            # The database is shared by the whole session. Emptied before the app starts:
            # its job sweeper looks for due rows at once, and would run another test's.
            _empty_shared_database(backend.database_url)
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="http://testserver",
        )
        client.app = app  # type: ignore[attr-defined]
        stopped = False

        async def stop_app() -> None:
            """Shut the app down as a server would (a test may do it before teardown)."""
            nonlocal stopped
            if not stopped:
                stopped = True
                await client.aclose()
                await lifespan.__aexit__(None, None, None)

        client.stop_app = stop_app  # type: ignore[attr-defined]
        stack.append(client)
        return client

    yield make
    for client in reversed(stack):
        await client.stop_app()  # type: ignore[attr-defined]


@pytest.fixture
async def client(make_client: Any) -> httpx.AsyncClient:
    return await make_client()


@pytest.fixture
async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    data = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {data['accessToken']}"}


@pytest.fixture
async def api_token_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """A seed-000 client token from the shared API key."""
    response = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
def create_user(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Any:
    """Create a user through the API and return (user, auth headers)."""

    async def make(
        role: str = "user", password: str = "user-password-123"
    ) -> tuple[dict[str, Any], dict[str, str]]:
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        response = await client.post(
            "/api/v1/users",
            json={"email": email, "password": password, "role": role},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        tokens = await login(client, email, password)
        return response.json()["data"], {"Authorization": f"Bearer {tokens['accessToken']}"}

    return make


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start real `vpsapi serve` processes; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(settings: Settings, **extra: str) -> ServerProcess:
        server = start_server(settings, tmp_path, f"serve{len(started)}", **extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
