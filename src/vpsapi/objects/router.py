"""Serves the embedded storage's objects through signed, expiring URLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from vpsapi.core.downloads import Download
from vpsapi.core.errors import BadRequest, Conflict, Forbidden, NotFound
from vpsapi.core.storage import (
    OBJECTS_PATH,
    InvalidKey,
    LocalStorage,
    ObjectSealed,
    SignatureError,
    served_media_type,
)

router = APIRouter(prefix=OBJECTS_PATH, tags=["objects"])

_ERRORS: dict[int | str, dict[str, str]] = {
    403: {"description": '`{"error": "Invalid signature" | "Signature expired"}`'},
    404: {"description": '`{"error": "Object not found"}`'},
}
_PUT_ERRORS: dict[int | str, dict[str, str]] = {
    **_ERRORS,
    409: {"description": '`{"error": "Upload already confirmed"}`: the object is final'},
}
Expires = Annotated[str, Query(max_length=20)]
Signature = Annotated[str, Query(alias="sig", max_length=128)]


class StoredOut(BaseModel):
    key: str
    size: int


def _authorized(request: Request, key: str, expires: str, signature: str) -> LocalStorage:
    storage = request.app.state.storage
    if not isinstance(storage, LocalStorage):
        raise NotFound(body={"error": "Object not found"})  # objects live in S3
    try:
        storage.verify(request.method, key, expires, signature)
    except SignatureError as exc:
        raise Forbidden(str(exc), body={"error": str(exc)}) from None
    try:
        storage.path_for(key)
    except InvalidKey:
        raise BadRequest(body={"error": "Invalid object key"}) from None
    return storage


@router.head("/{key:path}", response_class=Download, include_in_schema=False)
@router.get(
    "/{key:path}",
    response_class=Download,
    summary="Download an object through a signed URL",
    responses=_ERRORS,
)
async def get_object(
    key: str, request: Request, expires: Expires = "", signature: Signature = ""
) -> Download:
    storage = _authorized(request, key, expires, signature)
    path = storage.path_for(key)
    if not path.is_file():
        raise NotFound(body={"error": "Object not found"})
    return Download(path, media_type=served_media_type(key))


@router.put(
    "/{key:path}",
    response_model=StoredOut,
    summary="Upload an object through a signed URL (raw body, like an S3 presigned PUT)",
    responses=_PUT_ERRORS,
)
async def put_object(
    key: str, request: Request, expires: Expires = "", signature: Signature = ""
) -> StoredOut:
    storage = _authorized(request, key, expires, signature)
    try:
        size = await storage.write(key, request.stream())
    except ObjectSealed:
        raise Conflict(
            "The object was confirmed; it cannot be replaced",
            body={"error": "Upload already confirmed"},
        ) from None
    return StoredOut(key=key, size=size)
