"""`/openapi.json` as the wire answers: each path family's error bodies (core/errors).

FastAPI documents every operation's validation failure as its own 422 `{"detail": [...]}`.
Only seed 002's paths answer that way, and there `detail` is also a sentence for the
other refusals (nginx's words at a 422); `/api/v1` answers the seed-001 envelope, and the
seed-000/003 paths a 400 `{"error", "details"}`. A client generated from the document,
or a contract test run against it, would otherwise expect bodies that never come.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from vpsapi.core.errors import is_fastapi_style, is_v1
from vpsapi.core.schemas import ErrorEnvelope, LegacyError

FASTAPI_VALIDATION = "HTTPValidationError"


class FieldProblem(BaseModel):
    field: str = Field(description="the field, dotted for nested ones (`url`, `body`: all of it)")
    message: str


class LegacyValidationError(BaseModel):
    """The seed-000/003 validation body (status 400)."""

    error: str = Field(description="`Validation failed`, or `Malformed JSON in request body`")
    details: list[FieldProblem] | None = None
    request_id: str = Field(alias="requestId")


class FastApiProblem(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class FastApiStyleError(BaseModel):
    """Seed 002's error body: FastAPI's, with `error` and `requestId` beside `detail`."""

    detail: list[FastApiProblem] | str = Field(
        description="the problems of a request that failed validation; else a sentence"
    )
    error: str
    request_id: str = Field(alias="requestId")


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == f"#/components/schemas/{FASTAPI_VALIDATION}")


def _declares_body(response: dict[str, Any]) -> bool:
    return "content" in response and not _is_fastapi_validation(response)


def _document_errors(path: str, responses: dict[str, Any]) -> None:
    """One operation's error answers in its family's body, in place. A body a route
    declared itself is kept."""
    if is_v1(path):
        family = ErrorEnvelope.__name__
    elif is_fastapi_style(path):
        family = FastApiStyleError.__name__
    else:
        family = LegacyError.__name__
        validation = responses.get("422")
        if validation is not None and _is_fastapi_validation(validation):
            del responses["422"]  # these paths refuse bad input with a 400
            responses.setdefault("400", {"description": "Validation failed or malformed JSON"})
    for status, response in responses.items():
        if status[:1] not in "45" or _declares_body(response):
            continue
        body = (
            LegacyValidationError.__name__
            if family == LegacyError.__name__ and status == "400"
            else family
        )
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}
        responses[status] = {**response, "content": content}


def _component_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (ErrorEnvelope, LegacyError, LegacyValidationError, FastApiStyleError):
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _validation_status(path: str) -> str:
    return "400" if not (is_v1(path) or is_fastapi_style(path)) else "422"


def _document_common_refusals(path: str, operation: dict[str, Any]) -> None:
    """What any such route may answer, where it did not say, as the middleware and the
    error handlers answer it whatever the route: 401 behind credentials, 404 for a path
    naming something, the family's validation failure (a NUL anywhere in the request is
    one on every route), for a body also one that is no JSON and one too large, a foreign
    browser origin's 403, and on /api the limiter's 429 (RATE_LIMIT_ENABLED)."""
    responses = operation.setdefault("responses", {})
    if operation.get("security"):
        responses.setdefault("401", {"description": "Missing or invalid credentials"})
    if "{" in path:
        responses.setdefault("404", {"description": "Not found"})
    responses.setdefault(_validation_status(path), {"description": "Validation failed"})
    if "requestBody" in operation:
        # /api/v1 refuses a body that is no JSON with a 400 beside its 422 for validation.
        malformed = "422" if is_fastapi_style(path) else "400"
        responses.setdefault(malformed, {"description": "Malformed JSON in request body"})
        responses.setdefault("413", {"description": "Request body too large (MAX_BODY_SIZE)"})
    # OriginGuard refuses a foreign browser origin on every path, /health too (seed 000).
    responses.setdefault(
        "403", {"description": "A browser origin not in ALLOWED_ORIGINS, or no right to it"}
    )
    if path.startswith("/api/"):
        responses.setdefault("429", {"description": "Rate limit exceeded"})


def document_error_families(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            _document_common_refusals(path, operation)
            _document_errors(path, operation["responses"])
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_component_schemas())
    # Every reference to FastAPI's body was replaced above (tests/core/test_openapi.py).
    components.pop(FASTAPI_VALIDATION, None)
    components.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_error_families(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def read_by_hand(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting the JSON body a route reads itself (to answer its
    seed's exact errors) as `model`, which FastAPI would otherwise leave out."""
    schema = {"application/json": {"schema": model.model_json_schema(by_alias=True)}}
    return {"requestBody": {"required": True, "content": schema}}
