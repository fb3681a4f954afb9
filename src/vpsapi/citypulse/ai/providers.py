"""Model providers spoken to over their documented HTTP APIs.

Two wire dialects cover every provider: OpenAI's `POST {base}/chat/completions`
(OpenAI, Groq, and any OpenAI-compatible server such as Ollama or vLLM) and
Anthropic's `POST {base}/v1/messages`. Failures become the service's errors: an
unconfigured provider `ServiceUnavailable` (503), an error answer, an unreachable
host or a malformed body `BadGateway` (502), no answer in time `GatewayTimeout` (504).
Provider messages are passed on with anything that looks like a key masked.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from vpsapi.config import Settings
from vpsapi.core.errors import AppError, BadGateway, GatewayTimeout, ServiceUnavailable
from vpsapi.core.http import outbound_client

ProviderName = Literal["openai", "anthropic", "groq", "openai-compatible"]
_KEY_SETTING = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "openai-compatible": "AI_OPENAI_COMPATIBLE_BASE_URL",
}
# The model asked for when neither the request nor AI_DEFAULT_MODEL names one: each hosted
# provider's small, inexpensive general model (FlowMind's sample sends only `{message}`).
# A local OpenAI-compatible server (Ollama, vLLM) serves whatever it was given: no default,
# a request to it names its model.
DEFAULT_MODELS: dict[ProviderName, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "groq": "llama-3.1-8b-instant",
}
# Key-like tokens (OpenAI `sk-…`, Anthropic `sk-ant-…`, Groq `gsk_…`), also partly masked ones.
_KEY_PATTERN = re.compile(r"\b(?:sk|gsk|xai)[-_][A-Za-z0-9*._-]{4,}")
_MAX_ERROR_CHARS = 500
# The Messages API version whose wire format this module reads.
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class ProviderConfig:
    name: ProviderName
    dialect: Literal["openai", "anthropic"]
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    default_model: str | None = None


def _secret(value: SecretStr | None) -> str | None:
    return (value.get_secret_value() or None) if value is not None else None


def configured_providers(settings: Settings) -> dict[str, ProviderConfig]:
    """Providers whose settings are set (a key; a base URL for the compatible one), in
    the order openai, anthropic, groq, openai-compatible."""
    found: dict[str, ProviderConfig] = {}
    if key := _secret(settings.openai_api_key):
        found["openai"] = ProviderConfig(
            "openai", "openai", settings.openai_base_url, key, DEFAULT_MODELS["openai"]
        )
    if key := _secret(settings.anthropic_api_key):
        found["anthropic"] = ProviderConfig(
            "anthropic", "anthropic", settings.anthropic_base_url, key, DEFAULT_MODELS["anthropic"]
        )
    if key := _secret(settings.groq_api_key):
        found["groq"] = ProviderConfig(
            "groq", "openai", settings.groq_base_url, key, DEFAULT_MODELS["groq"]
        )
    if settings.ai_openai_compatible_base_url:
        found["openai-compatible"] = ProviderConfig(
            "openai-compatible",
            "openai",
            settings.ai_openai_compatible_base_url,
            _secret(settings.ai_openai_compatible_api_key),
        )
    return found


def resolve_provider(settings: Settings, name: str | None) -> ProviderConfig:
    """The named provider, else AI_DEFAULT_PROVIDER, else the first configured one."""
    available = configured_providers(settings)
    wanted = name or settings.ai_default_provider
    if not wanted:
        if not available:
            raise ServiceUnavailable(
                "No AI provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, "
                "GROQ_API_KEY or AI_OPENAI_COMPATIBLE_BASE_URL"
            )
        return next(iter(available.values()))
    if wanted not in available:
        setting = _KEY_SETTING.get(wanted)
        hint = f": set {setting}" if setting else ""
        raise ServiceUnavailable(f"AI provider '{wanted}' is not configured{hint}")
    return available[wanted]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatCall:
    """One request to a model: messages are `{role, content}` with system|user|assistant."""

    model: str
    messages: list[dict[str, str]]
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass
class Completion:
    content: str
    model: str
    usage: Usage


def new_http_client(settings: Settings) -> httpx.AsyncClient:
    """A pooled client; every phase (connect, each read, write) times out separately."""
    return outbound_client(
        timeout=httpx.Timeout(settings.ai_timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
    )


def redact(text: str, config: ProviderConfig) -> str:
    if config.api_key:
        text = text.replace(config.api_key, "****")
    return _KEY_PATTERN.sub("****", text)[:_MAX_ERROR_CHARS]


def _error_text(payload: Any) -> str | None:
    """The message of an OpenAI (`{error: {message}}`), Anthropic (`{type: "error",
    error: {type, message}}`) or Ollama (`{error: "..."}`) error body."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    message = payload.get("message") or payload.get("detail")
    return message if isinstance(message, str) else None


def _provider_failure(
    config: ProviderConfig, status: int, body: bytes, retry_after: str | None
) -> BadGateway:
    try:
        message = _error_text(json.loads(body)) or body.decode("utf-8", "replace").strip()
    except ValueError:
        message = body.decode("utf-8", "replace").strip()
    headers = {"Retry-After": retry_after} if retry_after and retry_after.isdigit() else None
    return BadGateway(
        f"{config.name} answered {status}: {redact(message or 'no message', config)}",
        headers=headers,
        extra={"provider": config.name, "providerStatus": status},
    )


def _timed_out(config: ProviderConfig) -> GatewayTimeout:
    return GatewayTimeout(f"{config.name} did not answer in time", extra={"provider": config.name})


def _unreachable(config: ProviderConfig, exc: httpx.HTTPError) -> AppError:
    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(config)
    reason = type(exc).__name__
    return BadGateway(f"Could not reach {config.name} ({reason})", extra={"provider": config.name})


def _malformed(config: ProviderConfig, what: str) -> BadGateway:
    return BadGateway(
        f"{config.name} sent an unexpected answer ({what})", extra={"provider": config.name}
    )


# ---- dialects --------------------------------------------------------------------------


def _request(config: ProviderConfig, call: ChatCall, *, stream: bool) -> httpx.Request:
    base = config.base_url.rstrip("/")
    body: dict[str, Any]
    if config.dialect == "anthropic":
        system = "\n\n".join(m["content"] for m in call.messages if m["role"] == "system")
        body = {
            "model": call.model,
            "messages": [m for m in call.messages if m["role"] != "system"],
            # Required by Anthropic; the others default to the model's own limit.
            "max_tokens": call.max_tokens,
        }
        if system:
            body["system"] = system
        headers = {"x-api-key": config.api_key or "", "anthropic-version": ANTHROPIC_VERSION}
        url = f"{base}/v1/messages"
    else:
        body = {"model": call.model, "messages": call.messages}
        if call.max_tokens is not None:
            # OpenAI's reasoning models refuse the older max_tokens; others know only it.
            key = "max_completion_tokens" if config.name == "openai" else "max_tokens"
            body[key] = call.max_tokens
        if stream:
            body["stream_options"] = {"include_usage": True}
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        url = f"{base}/chat/completions"
    if call.temperature is not None:
        body["temperature"] = call.temperature
    if stream:
        body["stream"] = True
    return httpx.Request("POST", url, json=body, headers=headers)


# The usage table's column is a 32-bit integer; no real answer comes near it.
_MAX_TOKEN_COUNT = 2**31 - 1


def _token_count(value: Any) -> int:
    """A provider's token count, or 0 where it sent none or one no answer can have
    (negative, huge, not an integer): usage is recorded and counted either way."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TOKEN_COUNT:
        return value
    return 0


def _parse_completion(config: ProviderConfig, call: ChatCall, payload: Any) -> Completion:
    if not isinstance(payload, dict):
        raise _malformed(config, "not a JSON object")
    usage: dict[str, Any] = payload["usage"] if isinstance(payload.get("usage"), dict) else {}
    model: str = payload["model"] if isinstance(payload.get("model"), str) else call.model
    if config.dialect == "anthropic":
        blocks = payload.get("content")
        if not isinstance(blocks, list):
            raise _malformed(config, "no content")
        text = "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
        return Completion(
            text,
            model,
            Usage(
                _token_count(usage.get("input_tokens")), _token_count(usage.get("output_tokens"))
            ),
        )
    try:
        content = payload["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _malformed(config, "no choices") from exc
    if not isinstance(content, str):
        raise _malformed(config, "content is not text")
    return Completion(
        content,
        model,
        Usage(
            _token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens"))
        ),
    )


async def complete(
    client: httpx.AsyncClient, settings: Settings, config: ProviderConfig, call: ChatCall
) -> Completion:
    """One non-streaming call, bounded by AI_TIMEOUT_SECONDS as a whole."""
    call = _with_defaults(settings, config, call)
    request = _request(config, call, stream=False)
    try:
        async with asyncio.timeout(settings.ai_timeout_seconds):
            response = await client.send(request)
    except TimeoutError as exc:
        raise _timed_out(config) from exc
    except httpx.HTTPError as exc:
        raise _unreachable(config, exc) from exc
    if response.status_code != 200:
        raise _provider_failure(
            config, response.status_code, response.content, response.headers.get("retry-after")
        )
    try:
        payload = response.json()
    except ValueError as exc:
        raise _malformed(config, "not JSON") from exc
    return _parse_completion(config, call, payload)


def _with_defaults(settings: Settings, config: ProviderConfig, call: ChatCall) -> ChatCall:
    if config.dialect == "anthropic" and call.max_tokens is None:
        return ChatCall(call.model, call.messages, call.temperature, settings.ai_default_max_tokens)
    return call


# ---- streaming -------------------------------------------------------------------------


async def _sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body."""
    event, data = "", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


class ChatStream:
    """An open streaming answer: iterate `deltas()`; afterwards `content`, `usage` and
    `model` hold the whole answer. Close with `aclose()` in every case."""

    def __init__(
        self, config: ProviderConfig, call: ChatCall, response: httpx.Response, started: float
    ) -> None:
        self.config = config
        self.model = call.model
        self.response = response
        self.started = started
        self.usage = Usage()
        self.parts: list[str] = []

    @property
    def content(self) -> str:
        return "".join(self.parts)

    async def deltas(self) -> AsyncIterator[str]:
        try:
            async for event, data in _sse(self.response):
                text = self._handle(event, data)
                if text is None:
                    return
                if text:
                    self.parts.append(text)
                    yield text
        except httpx.HTTPError as exc:
            raise _unreachable(self.config, exc) from exc

    def _handle(self, event: str, data: str) -> str | None:
        """The text of one provider event ('' for none); None at the end of the answer."""
        if self.config.dialect == "openai" and data.strip() == "[DONE]":
            return None
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise _malformed(self.config, "stream event is not JSON") from exc
        if not isinstance(payload, dict):
            raise _malformed(self.config, "stream event is not an object")
        if event == "error" or payload.get("type") == "error" or "error" in payload:
            message = redact(_error_text(payload) or "stream failed", self.config)
            raise BadGateway(
                f"{self.config.name} failed while streaming: {message}",
                extra={"provider": self.config.name},
            )
        if self.config.dialect == "anthropic":
            return self._anthropic(payload)
        return self._openai(payload)

    def _anthropic(self, payload: dict[str, Any]) -> str | None:
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message") or {}
            self.model = message.get("model") or self.model
            usage = message.get("usage") or {}
            self.usage.prompt_tokens = _token_count(usage.get("input_tokens"))
            self.usage.completion_tokens = _token_count(usage.get("output_tokens"))
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta":
                return str(delta.get("text") or "")
        elif kind == "message_delta":
            # Anthropic's output_tokens here is the running total, not an increment.
            usage = payload.get("usage") or {}
            if "output_tokens" in usage:
                self.usage.completion_tokens = _token_count(usage["output_tokens"])
        elif kind == "message_stop":
            return None
        return ""

    def _openai(self, payload: dict[str, Any]) -> str:
        self.model = payload.get("model") or self.model
        # `usage` comes in the last chunk (stream_options.include_usage); Groq sends it
        # under `x_groq` as well.
        usage = payload.get("usage") or (payload.get("x_groq") or {}).get("usage")
        if isinstance(usage, dict):
            self.usage = Usage(
                _token_count(usage.get("prompt_tokens")),
                _token_count(usage.get("completion_tokens")),
            )
        choices = payload.get("choices") or []
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            return content if isinstance(content, str) else ""
        return ""

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_stream(
    client: httpx.AsyncClient, settings: Settings, config: ProviderConfig, call: ChatCall
) -> ChatStream:
    """Send a streaming request and wait for the provider's status line, so that its
    refusal still becomes a 502/504 answer rather than an error inside the stream."""
    call = _with_defaults(settings, config, call)
    request = _request(config, call, stream=True)
    started = time.perf_counter()
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _unreachable(config, exc) from exc
    if response.status_code != 200:
        try:
            body = await response.aread()
        except httpx.HTTPError:
            body = b""
        finally:
            await response.aclose()
        raise _provider_failure(
            config, response.status_code, body, response.headers.get("retry-after")
        )
    return ChatStream(config, call, response, started)
