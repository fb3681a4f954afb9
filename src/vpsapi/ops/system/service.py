"""Host figures (psutil), the managed nginx's state, and bounded reads of its log files."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Literal

import psutil

from vpsapi import __version__
from vpsapi.config import Settings
from vpsapi.core.errors import NotFound, ServiceUnavailable
from vpsapi.ops.logs import reader
from vpsapi.ops.nginx.control import NginxControl
from vpsapi.ops.performance.cache import OpsCache

GB = 1024**3
NGINX_VERSION_TTL = 300  # seconds; `nginx -v` is a process start

NginxLog = Literal["access", "error"]
_PID_DIRECTIVE = re.compile(r"^\s*pid\s+([^;\s]+)\s*;", re.MULTILINE)


def host_figures() -> dict[str, Any]:
    """CPU, memory, disk and load right now (CPU since the previous call in this process)."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu_usage": psutil.cpu_percent(interval=None),
        "cpu_count": psutil.cpu_count() or 1,
        "memory_usage": memory.percent,
        "memory_used": round(memory.used / GB, 2),
        "memory_total": round(memory.total / GB, 2),
        "disk_usage": disk.percent,
        "disk_used": round(disk.used / GB, 2),
        "disk_total": round(disk.total / GB, 2),
        "load_average": load1,
        "load_averages": [load1, load5, load15],
    }


def network_counters() -> dict[str, int]:
    counters = psutil.net_io_counters()
    return {
        "bytes_sent": counters.bytes_sent,
        "bytes_recv": counters.bytes_recv,
        "packets_sent": counters.packets_sent,
        "packets_recv": counters.packets_recv,
        "errin": counters.errin,
        "errout": counters.errout,
        "dropin": counters.dropin,
        "dropout": counters.dropout,
    }


def _format_uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h"


async def nginx_pid_file(nginx: NginxControl) -> Path | None:
    """Where the managed nginx writes its pid: the main config's `pid`, else the built-in."""
    prefix = Path(nginx.settings.nginx_prefix or "/etc/nginx")
    try:
        match = _PID_DIRECTIVE.search((await nginx.main_conf()).read_text())
    except (OSError, ServiceUnavailable):
        match = None
    if match is None:
        try:
            built = (await nginx.run([nginx.settings.nginx_bin, "-V"])).output
        except ServiceUnavailable:
            return None
        match = re.search(r"--pid-path=(\S+)", built)
    if match is None:
        return None
    path = Path(match.group(1))
    return path if path.is_absolute() else prefix / path


async def nginx_running(nginx: NginxControl) -> bool:
    pid_file = await nginx_pid_file(nginx)
    if pid_file is None:
        return False
    try:
        process = psutil.Process(int(pid_file.read_text().strip()))
        return "nginx" in process.name() and process.status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, psutil.Error):
        return False


async def nginx_version(nginx: NginxControl, cache: OpsCache) -> str | None:
    cached = await cache.get("nginx-version")
    if cached is not None:
        return str(cached) or None
    version = await nginx.version()
    await cache.set("nginx-version", version or "", NGINX_VERSION_TTL)
    return version


async def system_status(
    settings: Settings, nginx: NginxControl, cache: OpsCache, service_started: float
) -> dict[str, Any]:
    figures = await asyncio.to_thread(host_figures)
    running, version = await asyncio.gather(nginx_running(nginx), nginx_version(nginx, cache))
    uptime = time.time() - psutil.boot_time()
    return {
        **figures,
        "hostname": socket.gethostname(),
        "uptime": _format_uptime(uptime),
        "uptime_seconds": int(uptime),
        "network": network_counters(),
        "nginx_status": "active" if running else "inactive",
        "nginx_running": running,
        "nginx_version": version or "unknown",
        "api_pid": os.getpid(),
        "service_version": __version__,
        "service_uptime_seconds": int(time.monotonic() - service_started),
    }


def nginx_log_path(settings: Settings, log: NginxLog) -> Path:
    return settings.nginx_log_dir / f"{log}.log"


async def nginx_logs(
    settings: Settings, logs: list[NginxLog], lines: int, grep: str | None
) -> dict[str, list[str]]:
    """The asked logs' tails (the logs area's bounded backwards reader, rotated copies
    included); when both are asked, a log nginx has not written yet is empty."""
    found: dict[str, list[str]] = {}
    for log in logs:
        path = nginx_log_path(settings, log)
        if not path.is_file() and len(logs) == 1:
            raise NotFound(f"nginx log {path.name} does not exist")
        found[log] = await asyncio.to_thread(reader.tail_lines, path, lines, grep)
    return found
