"""File downloads (stored objects, backup archives) with Range requests read as nginx does."""

from __future__ import annotations

from starlette import responses
from starlette.responses import FileResponse, MalformedRangeHeader

from vpsapi.core.errors import RangeNotSatisfiable


class Download(FileResponse):
    """Starlette's FileResponse, but a Range header it cannot read (`bytes=abc`, `items=0-5`,
    `bytes=100-50`) is ignored, as RFC 9110 §14.2 allows and nginx does: the whole file,
    200, where Starlette answered a 400 in plain text. A range that starts past the end is
    a 416 with `Content-Range: bytes */<size>` and the path's error body."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # no range: the whole file
        except responses.RangeNotSatisfiable as exc:
            # Raised while the response is sent, before it starts: the app's handlers
            # still answer it.
            raise RangeNotSatisfiable(
                headers={"Content-Range": f"bytes */{exc.max_size}"}
            ) from None
