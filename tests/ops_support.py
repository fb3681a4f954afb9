"""A private real nginx for the ops tests (and the objects they share)."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

NGINX = shutil.which("nginx")


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

    def settled_masters(self) -> list[psutil.Process]:
        """`masters()` once a single one is left, or as they are after 10 s: under load the
        process table may still show a master on its way out just after a restart."""
        deadline = time.monotonic() + 10
        while len(found := self.masters()) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def masters(self) -> list[psutil.Process]:
        """The nginx master(s) of this prefix: the pid file's, and any a restart raced past it."""
        found: dict[int, psutil.Process] = {}
        try:
            pid = int(self.pid_file.read_text().strip())
            found[pid] = psutil.Process(pid)
        except (OSError, ValueError, psutil.Error):
            pass
        for process in psutil.process_iter(["name", "cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if "master process" in line and f"-p {self.prefix} " in line:
                found[process.pid] = process
        return list(found.values())

    def stop(self) -> None:
        masters = self.masters()
        for master in masters:
            with contextlib.suppress(psutil.Error):
                master.terminate()
        psutil.wait_procs(masters, timeout=10)


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


class NamedBackend:
    """A real HTTP server answering `backend <name>` on every GET."""

    def __init__(self, name: str) -> None:
        body = f"backend {name}".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def site_body(site_id: str, port: int, backend: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": site_id,
        "server_name": "example.test",
        "listen_port": port,
        "locations": [{"path": "/", "backend": backend}],
        **extra,
    }


def through_nginx(port: int, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "example.test"}, timeout=5)
