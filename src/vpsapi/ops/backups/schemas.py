from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class BackupOut(BaseModel):
    """One archive in BACKUP_DIR; `filename, created_at, size, config_count` as the
    original VPS manager listed them."""

    filename: str
    size: int
    sha256: str = Field(description="of the whole archive, to compare after a download")
    created_at: datetime
    config_count: int = Field(description="managed nginx files in the backup")
    cert_count: int = Field(description="files of SSL_CERT_DIR in the backup (keys included)")
    database: str | None = Field(default=None, description="sqlite or postgresql")
    kind: Literal["backup", "safety"] = Field(
        description="safety: taken automatically before a restore"
    )
    description: str | None = None
    created_by: str | None = None
    version: int | None = None
    error: str | None = Field(default=None, description="why the manifest could not be read")


class BackupList(BaseModel):
    backups: list[BackupOut]


class BackupCreate(BaseModel):
    description: str | None = Field(default=None, max_length=500)


class BackupAccepted(BaseModel):
    message: str
    filename: str = Field(description="the archive the job writes")
    job_id: str
    jobId: str
    status: str
    status_url: str
    progress_url: str


class Restored(BaseModel):
    nginx_files: int
    certificates: int
    tables: dict[str, int] = Field(description="rows restored per table")


class RestoreResult(BaseModel):
    message: str
    filename: str
    safety_backup: str = Field(description="the state before the restore, restorable too")
    restored: Restored


class DeleteResult(BaseModel):
    message: str
    filename: str
