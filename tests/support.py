"""Helpers shared by tests (importable as `support`): constants, login, real processes,
races."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_API_KEY = "test-shared-api-key-0123456789"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-for-tests"
JWT_SECRET = "test-jwt-secret-0123456789-abcdefghijklmnop"


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# ---- real server processes ---------------------------------------------------------


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the kernel's range for outgoing connections: a port the kernel handed out (bind to
# port 0) may be the local end of some client connection by the time a server binds it,
# and nginx then keeps its old configuration on reload (seen in CI, both suites running).
_PORTS = range(15000, max(min(_ephemeral_ports_start(), 32768), 20000))
_handed_out: set[int] = set()  # a test may take several before it starts anything


def free_port() -> int:
    """A port nothing listens on or connects from now, for a server a test starts."""
    for _ in range(200):
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, sig: int | None = None) -> None:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `vpsapi` subprocess equivalent to `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPSAPI_", "RATE_LIMIT"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT / "src"),
            "ENVIRONMENT": "test",
            "DATA_DIR": str(settings.data_dir),
            "API_KEY": SHARED_API_KEY,
            "JWT_SECRET": JWT_SECRET,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "REDIS_PREFIX": settings.redis_prefix,
            "RATE_LIMIT_ENABLED": str(settings.rate_limit_enabled).lower(),
            "LOG_FORMAT": "json",
        }
    )
    env.update(extra)
    return env


def start_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "vpsapi", *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=str(settings_cwd(env)),
    )


def settings_cwd(env: dict[str, str]) -> Path:
    return Path(env["DATA_DIR"]).parent


def start_server(
    settings: Settings, tmp_path: Path, name: str = "serve", **extra: str
) -> ServerProcess:
    port = free_port()
    log_path = tmp_path / f"{name}-{port}.log"
    process = start_process(
        ["serve", "--host", "127.0.0.1", "--port", str(port)],
        server_env(settings, **extra),
        log_path,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(base_url + "/health/live", timeout=1).status_code == 200:
                return ServerProcess(process, base_url, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start: {log_path.read_text()[-3000:]}")


def render_nginx_site(tmp: Path, upstreams: list[str], port: int) -> Path:
    """The deployed site with test certificates, a loopback port and our upstreams."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    site = (ROOT / "deploy" / "nginx" / "vpsapi.conf").read_text()
    # Our upstreams, failing over fast (the fault tests kill them); the rest as deployed.
    site = re.sub(
        r"upstream vpsapi \{.*?(\n    keepalive \d+;)\n\}",
        lambda match: (
            "upstream vpsapi {\n"
            + "".join(f"    server {u} max_fails=1 fail_timeout=2s;\n" for u in upstreams)
            + match.group(1).lstrip("\n")
            + "\n}"
        ),
        site,
        flags=re.S,
    )
    site = site.replace("/etc/letsencrypt/live/api.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/api.example.com/privkey.pem", str(key))
    site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{port} ssl")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    site = site.replace("/var/log/nginx/vpsapi.access.log", f"{tmp}/logs/access.log")
    (tmp / "logs").mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes auto;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/logs/error.log;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\naccess_log {tmp}/logs/access.log;\nclient_body_temp_path {tmp}/body;\n"
        f"proxy_temp_path {tmp}/proxy;\n{site}\n}}\n"
    )
    return conf


# ---- races ---------------------------------------------------------------------------


def deleted_right_after(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    table: str,
    row_id: Callable[[Any], str],
) -> None:
    """Make `owner.<name>` (an async function taking the session first) delete the row of
    `table` with the id `row_id(result)` right after it returns, in the request's own
    transaction: as a concurrent request's DELETE committed between a service's lookup
    and its write, on every run and either engine. Plain SQL: the ORM still holds the row
    it loaded, as it does in the race."""
    real = getattr(owner, name)

    async def then_deleted(session: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        found = await real(session, *args, **kwargs)
        await session.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id(found)})
        return found

    monkeypatch.setattr(owner, name, then_deleted)


def same_answer(response: httpx.Response, expected: httpx.Response) -> bool:
    """Both answered alike: status and body, but for what differs per request."""
    per_request = {"timestamp", "path", "method", "requestId"}

    def shape(answer: httpx.Response) -> tuple[int, dict[str, Any]]:
        body = {k: v for k, v in answer.json().items() if k not in per_request}
        return answer.status_code, body

    return shape(response) == shape(expected)
