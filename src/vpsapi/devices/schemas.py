"""Types shared by the devices routers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field


def _as_utc(value: datetime) -> datetime:
    # Naive times (e.g. "2024-05-01 10:00:00") are UTC, as the seed's TIMESTAMP columns.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ISO-8601 strings, or Unix time in seconds or milliseconds.
Moment = Annotated[datetime, AfterValidator(_as_utc)]
DeviceId = Annotated[str, Field(min_length=1, max_length=64)]
AlarmType = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


def iso(moment: datetime) -> str:
    """As JavaScript's Date.toJSON(), which the seed's Node answers produced."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
