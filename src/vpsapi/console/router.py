"""Serves the console: `/` is its page, `/console/...` its static files (ES modules, CSS,
the vendored chart library). Nothing here is API: these paths sit outside `/api`, so the
rate limits do not apply to them, and the console reaches the data through the public API
like any other client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Revalidate on every load (a cheap 304 through the ETag): after an upgrade the browser
# never mixes old and new modules.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


class ConsoleFiles(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(NO_CACHE)
        return response


# html=True: `/console/` (and `/console`, redirected) open the console too.
_FILES = ConsoleFiles(directory=STATIC_DIR, html=True)
_PAGE = STATIC_DIR / "index.html"


@router.api_route("/", methods=["GET", "HEAD"])
async def console_page(request: Request) -> Response:
    # Through the static files' own answer: a matching If-None-Match is a 304.
    return _FILES.file_response(_PAGE, _PAGE.stat(), request.scope)


def static_files(_app: Any) -> ConsoleFiles:
    return _FILES
