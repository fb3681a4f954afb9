"""Keyset pagination over (created_at, id), newest first: opaque, stable under inserts."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

from vpsapi.core.errors import BadRequest
from vpsapi.core.schemas import as_utc


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        # In UTC as the column binds it: a forged 0001-01-01T00:00+05:00 fails here, not there.
        return as_utc(datetime.fromisoformat(created)), str(row_id)
    except (ValueError, TypeError) as exc:
        raise BadRequest("Invalid cursor") from exc


def older_than(created_column: Any, id_column: Any, cursor: str) -> ColumnElement[bool]:
    """Rows after `cursor` in (created_at desc, id desc) order."""
    created, row_id = decode_cursor(cursor)
    return or_(created_column < created, and_(created_column == created, id_column < row_id))
