"""The console module: its page and static files; no tables, no settings, no API."""

from __future__ import annotations

from vpsapi.console.router import router, static_files
from vpsapi.core.modules import Module

MODULE = Module(
    name="console",
    description="Operator console: a web dashboard at / (jobs, sites, system, devices, buildings)",
    routers=[router],
    mounts=[("/console", static_files)],
)
