"""Fixtures for the ops module: a private real nginx and an app that manages it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops_support import NGINX, NamedBackend, PrivateNginx, write_main_conf
from support import ADMIN_EMAIL, ADMIN_PASSWORD, login


@pytest.fixture
def private_nginx(tmp_path: Path) -> Iterator[PrivateNginx]:
    if NGINX is None:
        pytest.skip("nginx is not installed (CI installs it)")
    prefix = tmp_path / "nginx"
    conf_dir = prefix / "managed"
    log_dir = prefix / "logs"
    nginx = PrivateNginx(prefix, write_main_conf(prefix, conf_dir, log_dir), conf_dir, log_dir)
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.fixture
async def ops_client(make_client: Any, private_nginx: PrivateNginx) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(**private_nginx.settings())
    return client


@pytest.fixture
async def ops_admin(ops_client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await login(ops_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


@pytest.fixture
async def ops_user(ops_client: httpx.AsyncClient, ops_admin: dict[str, str]) -> dict[str, str]:
    """Headers of a plain (non-admin) user, for the 403 checks."""
    email = f"viewer-{os.urandom(4).hex()}@example.com"
    response = await ops_client.post(
        "/api/v1/users",
        json={"email": email, "password": "viewer-password-1", "role": "user"},
        headers=ops_admin,
    )
    assert response.status_code == 201, response.text
    tokens = await login(ops_client, email, "viewer-password-1")
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


@pytest.fixture
def backends() -> Iterator[list[NamedBackend]]:
    started = [NamedBackend("one"), NamedBackend("two")]
    yield started
    for backend in started:
        backend.close()
