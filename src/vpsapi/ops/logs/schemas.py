"""Request and response shapes of /api/logs (names follow the original VPS manager)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from vpsapi.core.schemas import JsonBool, NumberNotBool

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
# As a query parameter: `ERROR` and `Error` too (log tools and the seed write levels in
# capitals); the lines themselves are compared case-insensitively already.
LogLevelParam = Annotated[
    LogLevel, BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value)
]
FileStream = Literal["application", "audit", "performance", "security"]


@dataclass(frozen=True)
class LogQuery:
    """Filters shared by every structured log endpoint."""

    level: LogLevel | None = None
    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None
    q: str | None = None
    limit: int = 100
    cursor: str | None = None


class LogPage(BaseModel):
    source: str = Field(description="the stream read: application, audit, performance, security")
    entries: list[dict[str, Any]] = Field(description="JSON log lines, newest first")
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next (older) page; null at the end"
    )
    total: int | None = Field(
        default=None, description="matching entries in all pages (only where cheap to count)"
    )


class AuditLogEntry(BaseModel):
    id: str
    timestamp: datetime
    actor: str
    user_id: str | None
    action: str
    target: str
    before: Any = None
    after: Any = None
    ip: str | None
    request_id: str | None
    outcome: str


class AuditLogPage(BaseModel):
    source: Literal["audit"] = "audit"
    entries: list[AuditLogEntry]
    next_cursor: str | None
    total: int


class TextLogLines(BaseModel):
    logs: list[str] = Field(description="raw lines, oldest first (as `tail` prints them)")
    lines: int = Field(description="number of lines returned")
    source: str | None = Field(description="file or program read; null when none is available")
    message: str | None = None


class NginxLogLines(TextLogLines):
    log_type: Literal["access", "error"]


class RetentionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: int = Field(
        ge=1, le=3650, description="rotated service log files older than this are removed"
    )
    audit_retention_days: int = Field(
        default=365, ge=1, le=36500, description="audit trail rows older than this are removed"
    )
    max_size_mb: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="per stream: the oldest rotated files go once the stream's files exceed this",
    )
    auto_cleanup: bool = Field(
        default=False, description="apply the policy by itself every LOG_CLEANUP_INTERVAL seconds"
    )


class RetentionPolicyOut(RetentionPolicy):
    updated_at: datetime | None = None
    updated_by: str | None = None


class RetentionPolicyChange(BaseModel):
    """PUT body: the fields given are merged onto the policy in force. The read-only
    fields of the GET answer are accepted and ignored, so that answer can be sent back."""

    model_config = ConfigDict(extra="forbid")

    retention_days: NumberNotBool[Annotated[int, Field(ge=1, le=3650)]] | None = None
    audit_retention_days: NumberNotBool[Annotated[int, Field(ge=1, le=36500)]] | None = None
    max_size_mb: NumberNotBool[Annotated[int, Field(ge=1, le=1_000_000)]] | None = None
    auto_cleanup: JsonBool | None = None
    updated_at: Any = Field(default=None, description="read-only: ignored")
    updated_by: Any = Field(default=None, description="read-only: ignored")

    @model_validator(mode="after")
    def _meaningful(self) -> RetentionPolicyChange:
        given = self.changes()
        if not given:
            raise ValueError("name at least one field of the policy to change")
        for name in ("retention_days", "audit_retention_days", "auto_cleanup"):
            if name in given and given[name] is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The policy fields the body names (an explicit null clears max_size_mb)."""
        return {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name in RetentionPolicy.model_fields
        }


class RemovedFile(BaseModel):
    file: str
    size_bytes: int
    modified_at: datetime
    reason: Literal["retention_days", "max_size_mb"]


class CleanupResult(BaseModel):
    message: str
    removed_files: list[RemovedFile]
    freed_bytes: int
    removed_audit_entries: int
