"""Types shared by the devices routers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

OUT_OF_RANGE = "must be between years 1 and 9999 in UTC"


def _as_utc(value: datetime) -> datetime:
    # Naive times (e.g. "2024-05-01 10:00:00") are UTC, as the seed's TIMESTAMP columns.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00: pydantic only turns ValueError into 400
        raise ValueError(OUT_OF_RANGE) from None


# ISO-8601 strings, or Unix time in seconds or milliseconds.
Moment = Annotated[datetime, AfterValidator(_as_utc)]
DeviceId = Annotated[str, Field(min_length=1, max_length=64)]
AlarmType = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


def iso(moment: datetime) -> str:
    """As JavaScript's Date.toJSON(), which the seed's Node answers produced."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
