"""Types shared by the devices routers."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vpsapi.core.schemas import UtcDatetime

# ISO-8601 strings, or Unix time in seconds or milliseconds; naive times are UTC, as the
# seed's TIMESTAMP columns.
Moment = UtcDatetime
DeviceId = Annotated[str, Field(min_length=1, max_length=64)]
AlarmType = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
