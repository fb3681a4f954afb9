"""Shared dependencies of the ops routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vpsapi.ops.nginx.control import NginxControl


async def get_nginx(request: Request) -> NginxControl:
    nginx: NginxControl = request.app.state.nginx
    return nginx


NginxDep = Annotated[NginxControl, Depends(get_nginx)]
