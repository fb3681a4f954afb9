"""Keyset pagination over (created_at, id), newest or oldest first: opaque, stable under
inserts and deletions (a page starts after the last row seen, wherever it now stands)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_
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


def older_than_cursor(created_column: Any, id_column: Any) -> ColumnElement[bool]:
    """Rows after the cursor that `cursor_params` binds, in (created_at desc, id desc)
    order: for a statement built once and run with each request's cursor."""
    created = bindparam("cursor_created", type_=created_column.type)
    row_id = bindparam("cursor_id", type_=id_column.type)
    return or_(created_column < created, and_(created_column == created, id_column < row_id))


def cursor_params(cursor: str) -> dict[str, Any]:
    created, row_id = decode_cursor(cursor)
    return {"cursor_created": created, "cursor_id": row_id}


def older_than(created_column: Any, id_column: Any, cursor: str) -> ColumnElement[bool]:
    """Rows after `cursor` in (created_at desc, id desc) order."""
    return older_than_cursor(created_column, id_column).params(cursor_params(cursor))


def newer_than(created_column: Any, id_column: Any, cursor: str) -> ColumnElement[bool]:
    """Rows after `cursor` in (created_at, id) order, oldest first."""
    created, row_id = decode_cursor(cursor)
    return or_(created_column > created, and_(created_column == created, id_column > row_id))
