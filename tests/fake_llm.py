"""A local HTTP server that speaks the model providers' documented wire formats.

No provider is reachable from the test machine, so this server stands in for them:
OpenAI's `POST /v1/chat/completions` (under `/openai`, Groq's `/groq/openai`, and an
unauthenticated OpenAI-compatible server under `/compat`) and Anthropic's
`POST /v1/messages` (under `/anthropic`). It checks credentials and request bodies
as the real APIs do, answers in their response and streaming formats, and their
error bodies. The model name picks a behaviour:

- `fail-500`: a 500 server error; `rate-limited`: 429 with Retry-After;
- `slow`: answers only after SLOW_SECONDS; `gated`: waits until `gate` is set;
- streaming only: `gated-stream` sends one piece, sets `chunks_sent` and waits for
  `gate`; `broken-stream` sends one piece, then the provider's in-stream error event;
- anything else: the reply `"<model> says: <last user message>"`, one token per word.

Used by the tests (in a thread: `FakeProviders().start()`) and by bench/ai.py (in its
own process: `uvicorn --factory fake_llm:create_app`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
GROQ_KEY = "gsk_test_groq_0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
SLOW_SECONDS = 8.0


def reply_for(model: str, messages: list[dict[str, Any]]) -> str:
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"{model} says: {last_user}"


def _tokens(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


@dataclass
class Received:
    provider: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeProviders:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    chunks_sent: threading.Event = field(default_factory=threading.Event)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, Any]:
        """Settings overrides pointing every provider at this server."""
        return {
            "openai_api_key": OPENAI_KEY,
            "openai_base_url": f"{self.base_url}/openai/v1",
            "anthropic_api_key": ANTHROPIC_KEY,
            "anthropic_base_url": f"{self.base_url}/anthropic",
            "groq_api_key": GROQ_KEY,
            "groq_base_url": f"{self.base_url}/groq/openai/v1",
            "ai_openai_compatible_base_url": f"{self.base_url}/compat/v1",
        }

    def env(self) -> dict[str, str]:
        """The same as environment variables, for `vpsapi` processes."""
        return {key.upper(): str(value) for key, value in self.settings().items()}

    def reset(self) -> None:
        self.received.clear()
        self.gate.clear()
        self.chunks_sent.clear()

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeProviders:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake provider server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.gate.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/openai/v1/chat/completions", self._openai("openai"), methods=["POST"]),
                Route("/groq/openai/v1/chat/completions", self._openai("groq"), methods=["POST"]),
                Route("/compat/v1/chat/completions", self._openai("compat"), methods=["POST"]),
                Route("/anthropic/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    # ---- shared behaviour ----------------------------------------------------------

    async def _behave(self, model: str, error: Any) -> Response | None:
        """The special models' behaviour; `error(status, type, message)` builds a body."""
        if model == "fail-500":
            return JSONResponse(error("api_error", "The server had an error processing it"), 500)
        if model == "rate-limited":
            return JSONResponse(
                error("rate_limit_error", "Rate limit reached for requests"),
                429,
                headers={"Retry-After": "7"},
            )
        if model == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if model == "gated":
            await asyncio.to_thread(self.gate.wait, 60)
        return None

    async def _json_body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # ---- OpenAI (and Groq, and OpenAI-compatible servers) -----------------------------

    def _openai(self, provider: str) -> Any:
        expected = {"openai": OPENAI_KEY, "groq": GROQ_KEY, "compat": None}[provider]

        def error(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
            return {"error": {"message": message, "type": kind, "param": None, "code": code}}

        async def endpoint(request: Request) -> Response:
            if expected is not None:
                auth = request.headers.get("authorization", "")
                if auth != f"Bearer {expected}":
                    key = auth.removeprefix("Bearer ")
                    return JSONResponse(
                        error(
                            "invalid_request_error",
                            f"Incorrect API key provided: {key}. You can find your API key "
                            "at https://platform.openai.com/account/api-keys.",
                            "invalid_api_key",
                        ),
                        401,
                    )
            body = await self._json_body(request)
            problem = _openai_problem(body)
            if problem or body is None:
                return JSONResponse(error("invalid_request_error", problem or "bad body"), 400)
            self.received.append(Received(provider, dict(request.headers), body))
            special = await self._behave(body["model"], error)
            if special is not None:
                return special
            text = reply_for(body["model"], body["messages"])
            usage = {
                "prompt_tokens": sum(_tokens(m["content"]) for m in body["messages"]),
                "completion_tokens": _tokens(text),
            }
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if body["model"] == "bad-usage":  # counts no real answer has
                usage = {"prompt_tokens": 10**30, "completion_tokens": -5, "total_tokens": -1}
            if body.get("stream"):
                with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(
                    self._openai_stream(body["model"], text, usage if with_usage else None),
                    media_type="text/event-stream",
                )
            return JSONResponse(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        return endpoint

    async def _openai_stream(
        self, model: str, text: str, usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        for number, piece in enumerate(_pieces(text)):
            yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            if number == 0 and model == "gated-stream":
                self.chunks_sent.set()
                await asyncio.to_thread(self.gate.wait, 60)
            if number == 0 and model == "broken-stream":
                error = {"message": "The model is overloaded", "type": "server_error"}
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
                return
        yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield chunk([], usage=usage)
        yield b"data: [DONE]\n\n"

    # ---- Anthropic --------------------------------------------------------------------

    async def _anthropic(self, request: Request) -> Response:
        def error(kind: str, message: str) -> dict[str, Any]:
            return {"type": "error", "error": {"type": kind, "message": message}}

        if request.headers.get("x-api-key") != ANTHROPIC_KEY:
            return JSONResponse(error("authentication_error", "invalid x-api-key"), 401)
        if not request.headers.get("anthropic-version"):
            return JSONResponse(
                error("invalid_request_error", "anthropic-version: header is required"), 400
            )
        body = await self._json_body(request)
        problem = _anthropic_problem(body)
        if problem or body is None:
            return JSONResponse(error("invalid_request_error", problem or "bad body"), 400)
        self.received.append(Received("anthropic", dict(request.headers), body))
        special = await self._behave(body["model"], error)
        if special is not None:
            return special
        text = reply_for(body["model"], body["messages"])
        prompt = sum(_tokens(m["content"]) for m in body["messages"]) + _tokens(
            body.get("system", "")
        )
        if body.get("stream"):
            return StreamingResponse(
                _anthropic_stream(body["model"], text, prompt), media_type="text/event-stream"
            )
        return JSONResponse(
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": _tokens(text)},
            }
        )


async def _anthropic_stream(model: str, text: str, prompt: int) -> AsyncIterator[bytes]:
    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()

    yield event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": prompt, "output_tokens": 1},
            },
        },
    )
    yield event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield event("ping", {"type": "ping"})
    for number, piece in enumerate(_pieces(text)):
        yield event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
        if number == 0 and model == "broken-stream":
            error = {"type": "overloaded_error", "message": "The model is overloaded"}
            yield event("error", {"type": "error", "error": error})
            return
    yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": _tokens(text)},
        },
    )
    yield event("message_stop", {"type": "message_stop"})


def create_app() -> Starlette:
    return FakeProviders().app()


def _openai_problem(body: dict[str, Any] | None) -> str | None:
    if body is None:
        return "We could not parse the JSON body of your request."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "[] is too short - 'messages'"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
        ):
            return f"Invalid value for 'messages[{index}].role'"
        if not isinstance(message.get("content"), str):
            return f"Invalid type for 'messages[{index}].content'"
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        return "Invalid 'temperature': decimal above maximum value."
    if "stream_options" in body and body.get("stream") is not True:
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body and (not isinstance(body[name], int) or body[name] < 1):
            return f"Invalid '{name}'"
    return None


def _anthropic_problem(body: dict[str, Any] | None) -> str | None:
    if body is None:
        return "Invalid JSON in request body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return (
                f'messages.{index}.role: Unexpected role "{role}". The Messages API accepts '
                'a top-level `system` parameter, not "system" as an input message role.'
            )
        if not isinstance(message.get("content"), str | list):
            return f"messages.{index}.content: Input should be a valid list"
    if "system" in body and not isinstance(body["system"], str | list):
        return "system: Input should be a valid list"
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    return None
