"""Keyset pagination: an opaque cursor holds the last row's position in the list's order,
and the next page goes on strictly after it, so rows inserted or deleted between pages
neither repeat nor skip any other."""

from __future__ import annotations

import base64
import binascii
import json
import math
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, asc, bindparam, desc, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from vpsapi.core.errors import BadRequest
from vpsapi.core.schemas import as_utc


def invalid_cursor() -> BadRequest:
    return BadRequest("Invalid cursor")


def _pack(position: list[Any]) -> str:
    raw = json.dumps(position).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    # UnicodeDecodeError is a ValueError; RecursionError: `[[[[…` nested past the parser.
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise invalid_cursor() from exc


def _plain_text(value: Any) -> str:
    """A string the database can take: a forged NUL or lone surrogate made PostgreSQL fail."""
    if not isinstance(value, str) or "\x00" in value:
        raise invalid_cursor()
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise invalid_cursor() from exc
    return value


def _moment(value: Any) -> datetime:
    try:
        # In UTC as the column binds it: a forged 0001-01-01T00:00+05:00 fails here, not there.
        return as_utc(datetime.fromisoformat(_plain_text(value)))
    except ValueError as exc:
        raise invalid_cursor() from exc


def after_position(
    key: Any, id_column: Any, value: Any, row_id: Any, *, descending: bool, nullable: bool = False
) -> ColumnElement[bool]:
    """Rows strictly after (`value`, `row_id`) in the order `Keyset.order_by` gives."""
    beyond = operator.lt if descending else operator.gt
    if value is None:  # among the nulls, which come last
        return and_(key.is_(None), beyond(id_column, row_id))
    after = or_(beyond(key, value), and_(key == value, beyond(id_column, row_id)))
    return or_(after, key.is_(None)) if nullable else after


@dataclass(frozen=True)
class Keyset:
    """One order a list pages in: `key` (a column or expression; `value` is read in the
    Python type its SQL type names: str, float or datetime), then `id_column` as the tie
    breaker. Its cursors carry `sort`, so one made for another order is refused, like
    an altered one, with 400 "Invalid cursor"."""

    sort: str
    key: Any
    id_column: Any
    descending: bool = False
    nullable: bool = False

    def order_by(self) -> list[Any]:
        """`key` then the id, both one way; nulls last either way, said outright as the
        engines differ (SQLite puts them first ascending, PostgreSQL first descending)."""
        direction = desc if self.descending else asc
        key = direction(self.key)
        return [key.nulls_last() if self.nullable else key, direction(self.id_column)]

    def cursor(self, value: Any, row_id: str) -> str:
        """The cursor of a page whose last row has `value` and `row_id`."""
        return _pack(
            [self.sort, value.isoformat() if isinstance(value, datetime) else value, row_id]
        )

    def after(self, cursor: str) -> ColumnElement[bool]:
        """Rows after the position `cursor` holds."""
        position = _unpack(cursor)
        if not isinstance(position, list) or len(position) != 3 or position[0] != self.sort:
            raise invalid_cursor()
        _, value, row_id = position
        value = None if value is None and self.nullable else self._value(value)
        return after_position(
            self.key,
            self.id_column,
            value,
            _plain_text(row_id),
            descending=self.descending,
            nullable=self.nullable,
        )

    def _value(self, value: Any) -> Any:
        sql_type = self.key.type
        if isinstance(sql_type, TypeDecorator):  # UTCDateTime names no Python type of its own
            sql_type = sql_type.impl_instance
        kind = sql_type.python_type
        if kind is datetime:
            return _moment(value)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid_cursor()
            try:
                number = float(value)
            except OverflowError as exc:
                raise invalid_cursor() from exc
            if not math.isfinite(number):  # json.loads reads NaN and 1e999
                raise invalid_cursor()
            return number
        return _plain_text(value)


# ---- (created_at, id), newest first: the jobs and AI usage lists ----------------------


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return _pack([created_at.isoformat(), row_id])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    position = _unpack(cursor)
    if not isinstance(position, list) or len(position) != 2:
        raise invalid_cursor()
    created, row_id = position
    return _moment(created), _plain_text(row_id)


def older_than_cursor(created_column: Any, id_column: Any) -> ColumnElement[bool]:
    """Rows after the cursor that `cursor_params` binds, in (created_at desc, id desc)
    order: for a statement built once and run with each request's cursor."""
    created = bindparam("cursor_created", type_=created_column.type)
    row_id = bindparam("cursor_id", type_=id_column.type)
    return after_position(created_column, id_column, created, row_id, descending=True)


def cursor_params(cursor: str) -> dict[str, Any]:
    created, row_id = decode_cursor(cursor)
    return {"cursor_created": created, "cursor_id": row_id}


def older_than(created_column: Any, id_column: Any, cursor: str) -> ColumnElement[bool]:
    """Rows after `cursor` in (created_at desc, id desc) order."""
    return older_than_cursor(created_column, id_column).params(cursor_params(cursor))


def newer_than(created_column: Any, id_column: Any, cursor: str) -> ColumnElement[bool]:
    """Rows after `cursor` in (created_at, id) order, oldest first."""
    created, row_id = decode_cursor(cursor)
    return after_position(created_column, id_column, created, row_id, descending=False)
