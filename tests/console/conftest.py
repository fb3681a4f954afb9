"""Browser fixtures: Debian's Chromium driven by Playwright, against a real `vpsapi serve`
that manages a private real nginx. Skipped with a reason when the browser or Playwright is
missing, except in CI (`CI=true`), where that is a failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console_support import CHROMIUM, DESKTOP, Console, socketio_mounted
from ops_support import NGINX, PrivateNginx, write_main_conf
from support import ServerProcess


def _require(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _require("no /usr/bin/chromium (apt-get install chromium); browsers are never downloaded")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def private_nginx(tmp_path: Path) -> Iterator[PrivateNginx]:
    """As tests/ops/conftest.py's: a real nginx with its own prefix, stopped at teardown."""
    if NGINX is None:
        _require("nginx is not installed (CI installs it)")
    prefix = tmp_path / "nginx"
    nginx = PrivateNginx(
        prefix,
        write_main_conf(prefix, prefix / "managed", prefix / "logs"),
        prefix / "managed",
        prefix / "logs",
    )
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    """SSL_CERT_DIR with one self-signed certificate (90 days) for app.example.test."""
    directory = tmp_path / "certs"
    directory.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=app.example.test",
            "-keyout",
            str(directory / "app.example.test.key"),
            "-out",
            str(directory / "app.example.test.crt"),
            "-days",
            "90",
        ],
        check=True,
        capture_output=True,
    )
    return directory


@pytest.fixture
def console_server(
    settings_factory: Any, server_factory: Any, private_nginx: PrivateNginx, cert_dir: Path
) -> ServerProcess:
    """A real server (job workers inside, monitoring sampled every second) managing the
    private nginx and a certificate directory."""
    nginx_env = {key.upper(): str(value) for key, value in private_nginx.settings().items()}
    server: ServerProcess = server_factory(
        settings_factory(),
        JOBS_INPROCESS_WORKERS="true",
        METRICS_INTERVAL="1",
        SSL_CERT_DIR=str(cert_dir),
        **nginx_env,
    )
    return server


@pytest.fixture
def open_console(browser: Any, backend: Any) -> Iterator[Any]:
    """Open a tab (desktop size unless told) on a server's console; its problems fail
    the test."""
    contexts: list[Any] = []
    consoles: list[Console] = []

    def make(server: ServerProcess, viewport: dict[str, int] | None = None) -> Console:
        context = browser.new_context(viewport=viewport or DESKTOP)
        contexts.append(context)
        page = context.new_page()
        console = Console(page, server.base_url, backend.name)
        if not socketio_mounted(server.base_url):
            # Until Socket.IO is served, the buildings page says live updates are off.
            console.allow(r"WebSocket connection to '.*/ws/\?EIO=4")
        page.on(
            "console",
            lambda m: m.type == "error" and console.record(f"console: {m.text} @ {m.location}"),
        )
        page.on("pageerror", lambda e: console.record(f"page error: {e}"))
        page.on(
            "requestfailed",
            # Closing a stream on purpose (leaving a page) aborts its request: not a failure.
            lambda r: (
                r.failure != "net::ERR_ABORTED"
                and console.record(f"request failed: {r.url} {r.failure}")
            ),
        )
        page.on(
            "response",
            lambda r: (
                r.status >= 400 and console.record(f"HTTP {r.status}: {r.request.method} {r.url}")
            ),
        )
        consoles.append(console)
        return console

    yield make
    for context in contexts:
        context.close()
    for console in consoles:
        assert console.problems == [], "\n".join(console.problems)
