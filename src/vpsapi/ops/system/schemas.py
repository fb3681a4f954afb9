from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class NetworkCounters(BaseModel):
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


class SystemStatus(BaseModel):
    """The original's SystemStats fields (sizes in GB), plus network and service figures."""

    hostname: str
    uptime: str = Field(description='host uptime, e.g. "12d 3h"')
    uptime_seconds: int
    load_average: float = Field(description="1-minute load average")
    load_averages: list[float] = Field(description="1, 5 and 15-minute load averages")
    cpu_usage: float = Field(description="percent")
    cpu_count: int
    memory_usage: float = Field(description="percent")
    memory_used: float = Field(description="GB")
    memory_total: float = Field(description="GB")
    disk_usage: float = Field(description="percent of /")
    disk_used: float = Field(description="GB")
    disk_total: float = Field(description="GB")
    network: NetworkCounters
    nginx_status: str = Field(description="active or inactive")
    nginx_running: bool
    nginx_version: str
    api_pid: int
    service_version: str
    service_uptime_seconds: int


class NginxActionResult(BaseModel):
    message: str
    output: str = Field(description="what nginx (or the restart command) printed")


class NginxLogs(BaseModel):
    access_logs: list[str] | None = None
    error_logs: list[str] | None = None
    lines: int
    grep: str | None = None
    timestamp: datetime
