"""Every request body reads numbers and booleans by the same rule (core/schemas.py):
`NumberNotBool` refuses true/false as a number, `JsonBool` takes true or false only."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, Strict
from pydantic.functional_validators import BeforeValidator

from vpsapi.app import MODULES
from vpsapi.core.schemas import refuse_boolean


def _routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # a router included in a router
        if included is not None:
            yield from _routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def _follows_the_rule(scalar: type, metadata: list[Any]) -> bool:
    if scalar is bool:
        return any(isinstance(item, Strict) and item.strict for item in metadata)
    return any(
        isinstance(item, BeforeValidator) and item.func is refuse_boolean for item in metadata
    )


def _offenders(annotation: Any, metadata: list[Any], where: str, seen: set[type]) -> Iterator[str]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *more = typing.get_args(annotation)
        yield from _offenders(inner, [*metadata, *more], where, seen)
    elif origin is not None and origin is not typing.Literal:  # unions, lists, dicts
        for argument in typing.get_args(annotation):
            yield from _offenders(
                argument, metadata if origin in (typing.Union, types.UnionType) else [], where, seen
            )
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _model_offenders(annotation, seen)
    elif annotation in (int, float, bool) and not _follows_the_rule(annotation, metadata):
        yield f"{where}: {annotation.__name__}"


def _model_offenders(model: type[BaseModel], seen: set[type]) -> Iterator[str]:
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        where = f"{model.__module__}.{model.__qualname__}.{name}"
        yield from _offenders(field.annotation, list(field.metadata), where, seen)


def test_every_body_number_and_boolean_refuses_the_other_kinds() -> None:
    seen: set[type] = set()
    offenders = [
        offender
        for module in MODULES
        for router in module.routers
        for route in _routes(router.routes)
        if route.body_field is not None
        for offender in _offenders(route.body_field.field_info.annotation, [], route.path, seen)
    ]
    names = {model.__name__ for model in seen}
    assert {"SiteIn", "ApiKeyCreate", "AlertRuleIn", "ClipIn", "ChatIn"} <= names  # walked
    assert offenders == []
