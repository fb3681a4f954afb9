"""What a domain module contributes to the application.

`app.py` lists the modules; each domain exposes one `MODULE` in its `module.py`.
Core never imports a domain: domains describe themselves with this dataclass.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from vpsapi.core.ratelimit import TierRule
from vpsapi.core.search import SearchProvider

if TYPE_CHECKING:
    from fastapi import FastAPI

# An async context manager run for the app's lifetime (start workers, subscribers...).
Lifespan = Callable[["FastAPI"], AbstractAsyncContextManager[Any]]
AsgiMount = tuple[str, Callable[["FastAPI"], Any]]


@dataclass
class Module:
    name: str
    routers: list[APIRouter] = field(default_factory=list)
    lifespan: Lifespan | None = None
    search_providers: list[SearchProvider] = field(default_factory=list)
    rate_limit_rules: list[TierRule] = field(default_factory=list)
    # (path, factory(app) -> ASGI app) mounted after the routers, e.g. Socket.IO.
    mounts: list[AsgiMount] = field(default_factory=list)
    # Path prefixes whose errors take FastAPI's `{"detail": ...}` shape (seed 002).
    fastapi_error_prefixes: list[str] = field(default_factory=list)
    description: str = ""
