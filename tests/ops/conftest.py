"""Fixtures for the ops module: a private real nginx and an app that manages it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

NGINX = shutil.which("nginx")
requires_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI installs it)")


@dataclass
class PrivateNginx:
    """A real nginx with its own prefix, main config and managed directory."""

    prefix: Path
    main_conf: Path
    conf_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    def settings(self) -> dict[str, Any]:
        return {
            "nginx_prefix": str(self.prefix),
            "nginx_main_conf": str(self.main_conf),
            "nginx_conf_dir": self.conf_dir,
            "nginx_log_dir": self.log_dir,
            # No systemd here: a restart is a stop and a start of this private nginx.
            "nginx_restart_cmd": (
                f"sh -c '{NGINX} -p {self.prefix} -c {self.main_conf} -s stop; sleep 0.5; "
                f"{NGINX} -p {self.prefix} -c {self.main_conf}'"
            ),
        }

    def start(self) -> None:
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.main_conf)], check=True)
        deadline = time.monotonic() + 10
        while not self.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def write_main_conf(prefix: Path, conf_dir: Path, log_dir: Path) -> Path:
    for sub in ("tmp", "html"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    conf_dir.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(
        f"    {name}_temp_path {prefix}/tmp/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    main_conf = prefix / "nginx.conf"
    main_conf.write_text(
        f"{user}pid {prefix}/nginx.pid;\nerror_log {log_dir}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {log_dir}/access.log;\n{temp_paths}\n"
        f"    include {conf_dir}/*.conf;\n}}\n"
    )
    return main_conf


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
