"""Response shapes shared by every module."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import pydantic_core
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    ValidationError,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from vpsapi.core.errors import MalformedJson, ValidationFailed, invalid, validation_details
from vpsapi.core.timestamps import js_iso_cached

T = TypeVar("T")
NumberT = TypeVar("NumberT", int, float)

OUT_OF_RANGE = "must be between years 1 and 9999 in UTC"


def as_utc(value: datetime) -> datetime:
    """A request's moment in UTC; a naive one is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00: pydantic turns only ValueError into 4xx
        raise ValueError(OUT_OF_RANGE) from None


NUL_MESSAGE = "must not contain NUL characters (\\u0000)"


def unstorable_text(value: str) -> str | None:
    """Why `value` is no text PostgreSQL can store, else None: what a request's text is
    held to (RequestMiddleware refuses a NUL in a URL or body, and a URL's percent-decoding
    leaves no unpaired surrogate), for text that comes another way (a Socket.IO event)."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode()
    except UnicodeEncodeError:
        return "must not contain unpaired surrogates (\\ud800-\\udfff)"
    return None


# Use for every datetime a request carries (body or query): out-of-range ones are a 4xx.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
# The same, where a moment without a timezone is refused rather than taken as UTC.
AwareUtcDatetime = Annotated[AwareDatetime, AfterValidator(as_utc)]


# A window's bounds: moments, or epoch milliseconds.
Bound = TypeVar("Bound", datetime, int)


def check_window(start: Bound, end: Bound) -> None:
    """A half-open `from`/`to` window (`from` included, `to` not) must hold a moment:
    `to` before or at `from` is a mistake to name, not an empty answer."""
    if end <= start:
        raise invalid("to", "must be after 'from'")


def refuse_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("Input should be a number, not true or false")
    return value


# The numbers and booleans of every request body use these two, so all modules refuse the
# same inputs (a test holds every body model to it). Query parameters stay lax: they are
# text by nature.
#
# A number: pydantic's lax mode reads JSON's true and false as 1 and 0, and no client
# sending one meant a number (a number sent as a string, "60", is still read). Constraints
# go inside, as in `NumberNotBool[Annotated[float, Field(gt=0)]]`: outside they would follow
# this validator, and OpenAPI would no longer show them as minimum and maximum.
NumberNotBool = Annotated[NumberT, BeforeValidator(refuse_boolean)]
# A boolean: true or false only. Lax mode also reads "yes", "off", "1" and 0 as booleans.
JsonBool = Annotated[bool, Strict()]


# A moment in an answer to seed 000/001's JavaScript clients, written as they write theirs.
JsDatetime = Annotated[
    datetime,
    PlainSerializer(js_iso_cached, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


class CamelModel(BaseModel):
    """Accepts and emits camelCase on the wire (seed 000/001 style)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class Envelope(BaseModel, Generic[T]):
    """The seed-001 success envelope."""

    success: Literal[True] = True
    data: T


class MessageData(BaseModel):
    message: str


class ErrorEnvelope(BaseModel):
    """The seed-001 error envelope (documentation of /api/v1 error answers)."""

    success: Literal[False] = False
    error: str
    message: str
    status_code: int = Field(alias="statusCode")
    timestamp: datetime
    path: str
    method: str
    request_id: str = Field(alias="requestId")
    errors: dict[str, list[str]] | None = None


class LegacyError(BaseModel):
    """The seed-000/003 error body."""

    error: str
    request_id: str | None = Field(default=None, alias="requestId")


class Page(BaseModel, Generic[T]):
    """A page of a cursor-paginated list."""

    items: list[T]
    next_cursor: str | None = Field(default=None, alias="nextCursor")

    model_config = ConfigDict(populate_by_name=True)


# A number JSON allows and a float cannot hold: an exponent, or 309 digits and more.
_MAY_OVERFLOW = re.compile(rb"\d[eE][+-]?\d|\d{309}")


def parse_json_body(raw: bytes) -> Any:
    """A request body read by hand, parsed as JSON (empty = None). Refused with 400 as
    malformed: bad syntax, bad UTF-8, unpaired surrogates (no store can encode them) and
    nesting deeper than the parser's limit (about 200 levels: json.loads would recurse
    until Python's stack gives out), and NaN or Infinity (not JSON: JSON.parse refuses them,
    and no answer could carry them back), also as a number beyond a float's range."""
    if not raw.strip():
        return None
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise MalformedJson(attempted=raw.lstrip()[:1] in (b"{", b"[")) from exc
    if _MAY_OVERFLOW.search(raw):
        # What the parser lets through: a number too large for a float (`1e400`) is read
        # as infinity, which no answer or JSON column could hold. Looked for only where
        # one may be: the check writes the whole value again.
        try:
            check_storable_json(value)
        except ValueError:
            message = "a number is out of range (beyond ±1.8e308)"
            raise ValidationFailed([{"field": "body", "message": message}]) from None
    return value


def check_storable_json(value: Any) -> Any:
    """A value parsed by FastAPI (Python's json, laxer than `parse_json_body`) that can
    be written as JSON and read back: stored otherwise, it breaks every later read of
    it (a job, an audit entry). Refused: unpaired surrogates, nesting deeper than about
    200 levels, and NaN or Infinity (PostgreSQL's json refuses them)."""
    try:
        written = pydantic_core.to_json(value, inf_nan_mode="constants")
        pydantic_core.from_json(written, allow_inf_nan=False)
    except ValueError as exc:  # PydanticSerializationError is one
        raise ValueError(
            "must be JSON nested at most about 200 levels deep, without unpaired "
            "surrogates (\\ud800-\\udfff), NaN or Infinity"
        ) from exc
    return value


StorableJsonObject = Annotated[dict[str, Any], AfterValidator(check_storable_json)]


def field_error(model: type[BaseModel], field: str, message: str, value: Any) -> ValidationError:
    """For a model validator to raise about one field (`a.b` for a nested one): a ValueError
    raised there is the whole body's, keyed `body` in a 422, not the field's."""
    return ValidationError.from_exception_data(
        model.__name__,
        [
            {
                "type": PydanticCustomError("value_error", message),
                "loc": tuple(field.split(".")),
                "input": value,
            }
        ],
    )


M = TypeVar("M", bound=BaseModel)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_body_fields(request: Request, *, max_files: int = 1000) -> Any:
    """A JSON body, or a form's fields as a dict (an attached file as its text). Refused
    as malformed: bad JSON, a file that is not UTF-8 text."""
    if not request.headers.get("content-type", "").startswith(_FORM_TYPES):
        return parse_json_body(await request.body())
    fields: dict[str, str] = {}
    async with request.form(max_files=max_files) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                try:
                    value = (await value.read()).decode()
                except UnicodeDecodeError:
                    raise ValidationFailed(
                        [{"field": name, "message": "must be a text file"}]
                    ) from None
            fields[name] = value
    return fields


def validated_body(model: type[M], raw: Any) -> M:
    """A body read by hand (JSON, or a form's fields) as `model`; refused in the path's
    validation shape."""
    if not isinstance(raw, dict):
        raise ValidationFailed([{"field": "body", "message": "Expected a JSON object"}])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(validation_details(exc.errors())) from exc


def patch_changes(patch: BaseModel, *, nullable: Collection[str] = ()) -> dict[str, Any]:
    """The fields a PATCH body names, by attribute name. Null clears a field in `nullable`;
    for any other it is refused (422 naming each such field, "cannot be null") rather than
    answered 200 with nothing changed."""
    changes = patch.model_dump(exclude_unset=True)
    fields = type(patch).model_fields
    nulls = [name for name, value in changes.items() if value is None and name not in nullable]
    if nulls:
        raise ValidationFailed(
            [{"field": fields[name].alias or name, "message": "cannot be null"} for name in nulls]
        )
    return changes


def envelope(data: T) -> Envelope[T]:
    return Envelope[T](data=data)


V1_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorEnvelope, "description": text}
    for code, text in (
        (401, "Missing or invalid credentials"),
        (403, "Insufficient permissions"),
        (422, "Validation error"),
        (429, "Rate limit exceeded"),
    )
}
