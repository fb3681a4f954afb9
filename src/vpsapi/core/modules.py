"""What a domain module contributes to the application.

`app.py` lists the modules; each domain exposes one `MODULE` in its `module.py`.
Core never imports a domain: domains describe themselves with this dataclass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from vpsapi.config import Settings
from vpsapi.core.errors import ServiceUnavailable
from vpsapi.core.ratelimit import TierRule
from vpsapi.core.search import SearchProvider

if TYPE_CHECKING:
    from fastapi import FastAPI

# An async context manager run for the app's lifetime (start workers, subscribers...).
Lifespan = Callable[["FastAPI"], AbstractAsyncContextManager[Any]]
AsgiMount = tuple[str, Callable[["FastAPI"], Any]]
# (name, probe(app)) shown by /health/ready; the probe raises when its dependency is down.
ReadinessCheck = tuple[str, Callable[["FastAPI"], Awaitable[None]]]


@dataclass
class Module:
    name: str
    routers: list[APIRouter] = field(default_factory=list)
    lifespan: Lifespan | None = None
    search_providers: list[SearchProvider] = field(default_factory=list)
    # A boolean setting that, false, turns the module's search kinds off as well as the
    # routes it guards itself (`feature_switch`).
    enabled_by: str | None = None
    rate_limit_rules: list[TierRule] = field(default_factory=list)
    # (path, factory(app) -> ASGI app) mounted after the routers, e.g. Socket.IO.
    mounts: list[AsgiMount] = field(default_factory=list)
    readiness_checks: list[ReadinessCheck] = field(default_factory=list)
    # Path prefixes whose errors take FastAPI's `{"detail": ...}` shape (seed 002).
    fastapi_error_prefixes: list[str] = field(default_factory=list)
    # Exact paths whose validation errors take express-validator's `{errors: [...]}` shape.
    express_validator_paths: list[str] = field(default_factory=list)
    description: str = ""


def switched_off(setting: str, feature: str) -> str:
    """What a client is told while the boolean setting `setting` turns `feature` off."""
    return f"{feature} is turned off on this server ({setting.upper()}=false)"


def feature_switch(setting: str, feature: str) -> Callable[[Request], Awaitable[None]]:
    """A router dependency answering 503 while the boolean setting `setting` is false."""
    if setting not in Settings.model_fields:
        raise ValueError(f"no setting {setting}")
    message = switched_off(setting, feature)

    async def switched_on(request: Request) -> None:
        if not getattr(request.app.state.settings, setting):
            raise ServiceUnavailable(message)

    return switched_on
