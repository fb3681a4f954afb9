from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vpsapi.core.schemas import JsDatetime
from vpsapi.jobs.processors import public_processor_names

JobStatus = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]
MAX_ITEMS = 1000


class JobSubmit(BaseModel):
    """Seed 000's Joi schema: unknown fields are stripped."""

    model_config = ConfigDict(extra="ignore")

    processingType: Annotated[str, Field(description="a registered processing type")]
    data: list[dict[str, Any]]
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("processingType")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in public_processor_names():
            raise ValueError("Invalid processing type")
        return value

    @field_validator("data")
    @classmethod
    def _size(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise ValueError("Data array must contain at least one item")
        if len(value) > MAX_ITEMS:
            raise ValueError(f"Data array cannot exceed {MAX_ITEMS} items")
        return value


class JobAccepted(BaseModel):
    jobId: str
    status: JobStatus


class JobOut(BaseModel):
    """Seed 000's job status, plus retry details."""

    jobId: str
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    processingType: str
    createdAt: JsDatetime
    updatedAt: JsDatetime
    startedAt: JsDatetime | None = None
    completedAt: JsDatetime | None = None
    attempts: int
    maxAttempts: int
    nextAttemptAt: JsDatetime | None = Field(
        default=None, description="when PROCESSING is waiting for a retry"
    )
    lastError: str | None = Field(default=None, description="error of the last failed attempt")
    result: Any | None = None
    error: str | None = None
    # Seed 000's job hash keeps these too.
    dataCount: int | None = Field(default=None, description="items the job was given")
    processingTime: int | None = Field(
        default=None, description="COMPLETED: milliseconds from submission to completion"
    )
    failedAt: JsDatetime | None = Field(default=None, description="FAILED: when it failed")
    cancelledAt: JsDatetime | None = Field(
        default=None, description="CANCELLED: when it was cancelled"
    )


class JobList(BaseModel):
    jobs: list[JobOut]
    nextCursor: str | None = None


class JobPage(BaseModel):
    items: list[JobOut]
    nextCursor: str | None = None
