from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vpsapi.core.schemas import StorableJsonObject


class CacheStats(BaseModel):
    backend: str = Field(description="redis (shared by all processes) or memory")
    key_prefix: str | None
    entries: int
    hits: int = Field(description="lookups that found a value, in this process")
    misses: int
    sets: int
    errors: int
    hit_rate: float | None
    redis: dict[str, Any] | None = Field(description="Redis INFO figures when REDIS_URL is set")


class CacheCleared(BaseModel):
    message: str
    removed: int


class ConnectionStats(BaseModel):
    database: dict[str, Any]
    redis: dict[str, Any] | None


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=64, description="e.g. nginx_test")
    params: StorableJsonObject = Field(default_factory=dict)


class TaskQueued(BaseModel):
    message: str
    task: str
    job_id: str
    jobId: str
    status: str
    status_url: str
    progress_url: str = Field(description="Server-Sent Events with the job's progress")


class QueueStatus(BaseModel):
    pending_tasks: int
    active_tasks: int
    by_status: dict[str, int]
    tasks: list[str] = Field(description="task names this service can run")
    workers: dict[str, Any]
