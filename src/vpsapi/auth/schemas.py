from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic.networks import validate_email
from pydantic_core import InitErrorDetails, PydanticCustomError

from vpsapi.auth.passwords import MIN_PASSWORD_LENGTH, check_new_password, too_short
from vpsapi.core.schemas import CamelModel, JsDatetime, JsonBool, NumberNotBool

RoleName = Literal["admin", "manager", "user"]
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,64}$")


class UserOut(CamelModel):
    id: str
    email: str
    username: str
    role: RoleName
    organization_id: str | None = None
    is_active: bool = True
    created_at: JsDatetime | None = None
    last_login_at: JsDatetime | None = None


def _check_login_email(value: str) -> str:
    # Seed 001's validateEmail. Only the shape is checked: a bootstrap ADMIN_EMAIL such as
    # admin@localhost must still sign in. (Usernames sign in at /api/auth/login.)
    if not _LOGIN_EMAIL.match(value.strip()):
        raise ValueError("Invalid email format")
    return value


_LOGIN_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _again(exc: ValidationError) -> list[InitErrorDetails]:
    """Each of a validation's errors as it was (type and words), whatever its kind, to be
    raised again beside one of ours."""
    return [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": e["input"]}
        for e in exc.errors(include_url=False)
    ]


class LoginRequest(CamelModel):
    email: Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_check_login_email)]
    password: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="wrap")
    @classmethod
    def _short_password_beside_other_errors(cls, data: Any, handler: Any) -> Any:
        """Seed 001's validation example (this seed's only body with both fields) names a
        short password beside a bad email, in its words. Alone, a short password is a wrong
        one (401): no account holds one, and a client trying a wrong password hears the
        same whatever its length."""
        try:
            return handler(data)
        except ValidationError as exc:
            password = data.get("password") if isinstance(data, dict) else None
            found = exc.errors(include_url=False)
            if (
                not isinstance(password, str)
                or not 0 < len(password) < MIN_PASSWORD_LENGTH
                or any(e["loc"] == ("password",) for e in found)  # already said what is wrong
            ):
                raise
            errors = _again(exc)
            errors.append(
                {
                    "type": PydanticCustomError("password_too_short", too_short()),
                    "loc": ("password",),
                    "input": password,
                }
            )
            raise ValidationError.from_exception_data(cls.__name__, errors) from None


class TokenPair(CamelModel):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["Bearer"] = "Bearer"


class LoginData(TokenPair):
    user: UserOut


class RefreshRequest(CamelModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(CamelModel):
    refresh_token: str | None = Field(default=None, max_length=4096)


class MeData(CamelModel):
    user: UserOut


class ApiTokenResponse(CamelModel):
    """Seed 000: `{token, expiresIn}`."""

    token: str
    expires_in: int


class OAuthLoginRequest(CamelModel):
    """Seed 002 login: username or email, and password."""

    username: str | None = Field(default=None, max_length=320)
    email: str | None = Field(default=None, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="wrap")
    @classmethod
    def _one_identifier(cls, data: Any, handler: Any) -> Any:
        """Neither username nor email is one more error, told beside the fields' own (an
        empty body names everything it lacks at once)."""
        missing_identifier = isinstance(data, dict) and not (
            data.get("username") or data.get("email")
        )
        try:
            login = handler(data)
        except ValidationError as exc:
            if not missing_identifier:
                raise
            errors = _again(exc)
        else:
            if not missing_identifier:
                return login
            errors = []
        errors.insert(
            0,
            {
                "type": PydanticCustomError("missing", "username or email is required"),
                "loc": ("username",),
                "input": data,
            },
        )
        raise ValidationError.from_exception_data(cls.__name__, errors)


class OAuthTokenResponse(CamelModel):
    """Seed 002 / OAuth2 password flow answer (snake_case, as OAuth2 clients expect)."""

    access_token: str = Field(serialization_alias="access_token")
    token_type: Literal["bearer"] = Field(default="bearer", serialization_alias="token_type")
    expires_in: int = Field(serialization_alias="expires_in")
    refresh_token: str = Field(serialization_alias="refresh_token")
    # The seed-002 project's own frontend reads `token`: the same access token.
    token: str = Field(serialization_alias="token")
    user: UserOut


class ApiKeyCreate(CamelModel):
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: NumberNotBool[Annotated[int, Field(ge=1, le=3650)]] | None = None


class ApiKeyOut(CamelModel):
    id: str
    name: str
    prefix: str
    user_id: str
    created_at: JsDatetime
    last_used_at: JsDatetime | None = None
    expires_at: JsDatetime | None = None
    revoked_at: JsDatetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The full key; shown only in this response")


def _check_username(value: str) -> str:
    if not _USERNAME.match(value):
        raise ValueError("username must be 3-64 letters, digits, '_', '.' or '-'")
    return value


Username = Annotated[str, AfterValidator(_check_username)]


def _check_new_email(value: str) -> str:
    try:
        return validate_email(value)[1]
    except PydanticCustomError:
        raise ValueError("Invalid email format") from None


# An address or password being set, refused in seed 001's words.
NewEmail = Annotated[
    str,
    Field(max_length=320, json_schema_extra={"format": "email"}),
    AfterValidator(_check_new_email),
]
NewPassword = Annotated[
    str,
    Field(
        max_length=1024,
        description=f"At least {MIN_PASSWORD_LENGTH} characters, not all of them whitespace",
        json_schema_extra={"minLength": MIN_PASSWORD_LENGTH},
    ),
    AfterValidator(check_new_password),
]


class UserCreate(CamelModel):
    email: NewEmail
    username: Username | None = None
    password: NewPassword
    role: RoleName = "user"
    organization_id: str | None = Field(default=None, max_length=64)


class UserUpdate(CamelModel):
    email: NewEmail | None = None
    username: Username | None = None
    password: NewPassword | None = None
    role: RoleName | None = None
    is_active: JsonBool | None = None
    organization_id: str | None = Field(default=None, max_length=64)
