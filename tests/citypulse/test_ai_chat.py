"""POST /api/v1/ai/chat against local servers speaking each provider's wire format:
answers, streaming, provider errors, timeouts, bad input, usage records, rate limit."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import httpx
import pytest

from ai_support import (  # noqa: F401
    _provider_server,
    ai_timeout_seconds,
    client,
    parse_sse,
    providers,
)
from fake_llm import ANTHROPIC_KEY, GROQ_KEY, OPENAI_KEY, FakeProviders
from support import ADMIN_EMAIL, ADMIN_PASSWORD
from vpsapi.citypulse.ai import service as ai_service

CHAT = "/api/v1/ai/chat"
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there"},
]


@pytest.fixture
async def user(create_user: Any) -> tuple[dict[str, Any], dict[str, str]]:
    return await create_user("user")


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("groq", "llama-3.1-8b-instant"),
        ("openai-compatible", "llama3.1:8b"),
    ],
)
async def test_chat_with_each_provider(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    provider: str,
    model: str,
) -> None:
    _, headers = user
    response = await client.post(
        CHAT,
        json={
            "messages": CONVERSATION,
            "model": model,
            "provider": provider,
            "temperature": 0.5,
            "max_tokens": 64,
        },
        headers={**headers, "X-Frontend-Source": "flowmind"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["provider"] == provider and data["model"] == model
    assert data["message"] == {"role": "assistant", "content": f"{model} says: hello there"}
    assert data["usage"] == {
        "promptTokens": 5,  # "You are terse." + "hello there"
        "completionTokens": 4,  # "<model> says: hello there"
        "totalTokens": 9,
    }
    assert isinstance(data["latencyMs"], int) and data["latencyMs"] >= 0

    (sent,) = providers.received
    assert sent.body["model"] == model and sent.body["temperature"] == 0.5
    if provider == "anthropic":
        assert sent.headers["x-api-key"] == ANTHROPIC_KEY
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.body["system"] == "You are terse."
        assert sent.body["messages"] == [{"role": "user", "content": "hello there"}]
        assert sent.body["max_tokens"] == 64
    else:
        assert sent.body["messages"] == CONVERSATION
        expected_key = {"openai": OPENAI_KEY, "groq": GROQ_KEY}.get(provider)
        if expected_key:
            assert sent.headers["authorization"] == f"Bearer {expected_key}"
        else:
            assert "authorization" not in sent.headers
        limit_field = "max_completion_tokens" if provider == "openai" else "max_tokens"
        assert sent.body[limit_field] == 64


async def test_anthropic_gets_default_max_tokens(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
) -> None:
    response = await client.post(
        CHAT,
        json={"message": "hi", "model": "claude-x", "provider": "anthropic"},
        headers=user[1],
    )
    assert response.status_code == 200, response.text
    assert providers.received[0].body["max_tokens"] == 1024


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        (None, "gpt-4o-mini"),  # the first configured provider, OpenAI
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-haiku-latest"),
        ("groq", "llama-3.1-8b-instant"),
    ],
)
async def test_seed_shorthand_without_any_model_uses_the_providers_default(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    provider: str | None,
    model: str,
) -> None:
    """FlowMind's sample sends only `{message}` (seed 004): with no AI_DEFAULT_MODEL, the
    provider's own default model answers rather than a 422."""
    body = {"message": "Hello AI"} | ({"provider": provider} if provider else {})
    response = await client.post(CHAT, json=body, headers=user[1])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["model"] == model
    (sent,) = providers.received
    assert sent.body["model"] == model


async def test_seed_shorthand_with_default_provider_and_model(
    make_client: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    app = await make_client(
        **providers.settings(), ai_default_provider="groq", ai_default_model="llama-3.1-70b"
    )
    tokens = (
        await app.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    # FlowMind's sample sends only `{message}` (seed 004).
    response = await app.post(CHAT, json={"message": "Hello AI"}, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["provider"], data["model"]) == ("groq", "llama-3.1-70b")
    assert data["message"]["content"] == "llama-3.1-70b says: Hello AI"

    listed = await app.get("/api/v1/ai/providers", headers=headers)
    # AI_DEFAULT_MODEL is every provider's default, the OpenAI-compatible one's too.
    model = "llama-3.1-70b"
    assert listed.json()["data"] == [
        {"name": "openai", "default": False, "defaultModel": model},
        {"name": "anthropic", "default": False, "defaultModel": model},
        {"name": "groq", "default": True, "defaultModel": model},
        {"name": "openai-compatible", "default": False, "defaultModel": model},
    ]


async def test_providers_say_the_model_a_chat_naming_none_gets(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
) -> None:
    """Without AI_DEFAULT_MODEL, each hosted provider's own; the OpenAI-compatible server
    has none (a request to it names its model). Documented in /openapi.json."""
    listed = await client.get("/api/v1/ai/providers", headers=user[1])
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == [
        {"name": "openai", "default": True, "defaultModel": "gpt-4o-mini"},
        {"name": "anthropic", "default": False, "defaultModel": "claude-3-5-haiku-latest"},
        {"name": "groq", "default": False, "defaultModel": "llama-3.1-8b-instant"},
        {"name": "openai-compatible", "default": False, "defaultModel": None},
    ]
    spec = (await client.get("/openapi.json")).json()
    documented = spec["components"]["schemas"]["ProviderOut"]
    assert "defaultModel" in documented["required"]
    assert {"type": "null"} in documented["properties"]["defaultModel"]["anyOf"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
async def test_stream_relays_provider_deltas(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    provider: str,
) -> None:
    # httpx's in-process transport hands over the whole body: assert its events here;
    # the live relay is checked against a real server process below.
    response = await client.post(
        CHAT,
        json={"messages": CONVERSATION, "model": "m-1", "provider": provider, "stream": True},
        headers=user[1],
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    deltas = [data["content"] for name, data in events if name == "delta"]
    assert deltas == ["m-1", " says:", " hello", " there"]
    name, done = events[-1]
    assert name == "done"
    assert done["message"] == {"role": "assistant", "content": "m-1 says: hello there"}
    assert done["usage"] == {"promptTokens": 5, "completionTokens": 4, "totalTokens": 9}
    assert done["provider"] == provider and isinstance(done["latencyMs"], int)
    if provider != "anthropic":
        assert providers.received[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_provider_failing_midstream_ends_with_an_error_event(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    provider: str,
) -> None:
    response = await client.post(
        CHAT,
        json={"message": "a b", "model": "broken-stream", "provider": provider, "stream": True},
        headers=user[1],
    )
    assert response.status_code == 200  # the status line had gone out before the failure
    events = parse_sse(response.text)
    assert events == [
        ("delta", {"content": "broken-stream"}),
        (
            "error",
            {
                "error": "BadGateway",
                "message": f"{provider} failed while streaming: The model is overloaded",
                "statusCode": 502,
            },
        ),
    ]
    usage = (await client.get("/api/v1/ai/usage", headers=user[1])).json()["data"]["items"]
    assert [(r["model"], r["status"]) for r in usage] == [("broken-stream", "error")]


async def _admin_headers(http: httpx.AsyncClient) -> dict[str, str]:
    login = await http.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    return {"Authorization": f"Bearer {login.json()['data']['accessToken']}"}


async def _usage_of(
    http: httpx.AsyncClient, headers: dict[str, str], model: str
) -> list[dict[str, Any]]:
    """The groq usage records of `model`, once there are any (none after 30 s)."""
    for _ in range(600):
        # The admin sees everyone's records, and the scale-out database is shared.
        usage = await http.get("/api/v1/ai/usage?provider=groq", headers=headers)
        records = [r for r in usage.json()["data"]["items"] if r["model"] == model]
        if records:
            return records
        await asyncio.sleep(0.05)
    return []


@pytest.mark.multiprocess
async def test_stream_is_live_through_a_real_server(
    settings_factory: Any,
    server_factory: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    server = server_factory(settings_factory(), **providers.env())
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        headers = await _admin_headers(http)
        body = {"message": "one two", "model": "gated-stream", "provider": "openai", "stream": True}
        async with http.stream("POST", CHAT, json=body, headers=headers) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            # The provider holds the rest of its answer until the gate opens: the first
            # delta arriving now shows the relay is not buffered.
            first = await _next_event(lines)
            assert first == ("delta", {"content": "gated-stream"})
            providers.gate.set()
            rest = [await _next_event(lines) for _ in range(4)]
    assert [name for name, _ in rest] == ["delta", "delta", "delta", "done"]
    assert rest[-1][1]["message"]["content"] == "gated-stream says: one two"


@pytest.mark.multiprocess
async def test_stream_left_by_the_client_is_recorded_as_cancelled(
    settings_factory: Any,
    server_factory: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    server = server_factory(settings_factory(), **providers.env())
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        headers = await _admin_headers(http)
        body = {"message": "bye", "model": "gated-stream", "provider": "groq", "stream": True}
        async with http.stream("POST", CHAT, json=body, headers=headers) as response:
            assert await _next_event(response.aiter_lines()) == (
                "delta",
                {"content": "gated-stream"},
            )
        # The client has gone; the provider is still holding its answer.
        records = await _usage_of(http, headers, "gated-stream")
        providers.gate.set()
        failed = await http.post(
            CHAT, json={"message": "x", "model": "fail-500", "provider": "groq"}, headers=headers
        )
        assert failed.status_code == 502
    assert [(r["model"], r["status"], r["stream"]) for r in records] == [
        ("gated-stream", "cancelled", True)
    ]
    server.stop()
    log = server.log_path.read_text()
    assert "ai_call_failed" in log
    for key in (OPENAI_KEY, GROQ_KEY, ANTHROPIC_KEY):
        assert key not in log


@pytest.mark.multiprocess
async def test_stream_left_before_the_provider_answered_is_recorded_as_cancelled(
    settings_factory: Any,
    server_factory: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    """A client gone while the provider had not started its answer was noticed only at
    AI_TIMEOUT_SECONDS: the call ran on until then and was recorded as a timeout."""
    server = server_factory(settings_factory(), **providers.env(), AI_TIMEOUT_SECONDS="600")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        headers = await _admin_headers(http)
        body = {"message": "bye", "model": "gated", "provider": "groq", "stream": True}
        leaving = asyncio.create_task(http.post(CHAT, json=body, headers=headers))
        for _ in range(600):  # until the provider holds the request (behind its gate)
            if providers.received or leaving.done():
                break
            await asyncio.sleep(0.05)
        assert [r.body["model"] for r in providers.received] == ["gated"], leaving
        leaving.cancel()  # the client closes its connection
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
        records = await _usage_of(http, headers, "gated")
        assert not providers.gate.is_set()  # the provider never answered
    assert [(r["status"], r["stream"]) for r in records] == [("cancelled", True)]
    server.stop()
    log = server.log_path.read_text()
    assert "ai_call_cancelled" in log and '"status":499' in log  # nginx's "client closed"
    assert "Traceback" not in log


def test_provider_keys_are_masked_in_the_effective_settings(
    settings_factory: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    shown = settings_factory(**providers.settings()).masked()
    assert shown["openai_api_key"] == shown["anthropic_api_key"] == shown["groq_api_key"] == "****"
    assert shown["openai_base_url"].endswith("/openai/v1")


async def _next_event(lines: Any) -> tuple[str, Any]:
    name, data = "message", None
    while True:
        line = await asyncio.wait_for(lines.__anext__(), 30)
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data = json.loads(line[5:].strip())
        elif line == "" and data is not None:
            return name, data


async def test_provider_not_configured_is_503(
    make_client: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    bare = await make_client()
    tokens = (
        await bare.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    response = await bare.post(CHAT, json={"message": "hi", "model": "m"}, headers=headers)
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False and body["statusCode"] == 503
    assert "OPENAI_API_KEY" in body["message"]

    switched_off = await make_client(**providers.settings(), ai_models_enabled=False)
    for path, body in ((CHAT, {"message": "hi", "model": "m"}), ("/api/v1/swarm/orchestrate", {})):
        response = await switched_off.post(path, json=body, headers=headers)
        assert response.status_code == 503
        assert response.json()["message"] == (
            "AI is turned off on this server (AI_MODELS_ENABLED=false)"
        )

    only_openai = await make_client(
        openai_api_key=OPENAI_KEY, openai_base_url=providers.settings()["openai_base_url"]
    )
    response = await only_openai.post(
        CHAT,
        json={"message": "hi", "model": "m", "provider": "anthropic", "stream": True},
        headers=headers,
    )
    assert response.status_code == 503
    assert response.json()["message"] == (
        "AI provider 'anthropic' is not configured: set ANTHROPIC_API_KEY"
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_usage_record_that_cannot_be_written_changes_no_answer(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    stream: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider's 502 stays the answer (the failed write raised over it: a 500)."""
    monkeypatch.setattr(ai_service, "AiUsage", lambda **_: object())  # no row to add
    response = await client.post(
        CHAT,
        json={"message": "hi", "model": "fail-500", "provider": "openai", "stream": stream},
        headers=user[1],
    )
    assert response.status_code == 502, response.text
    assert response.json()["providerStatus"] == 500


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_provider_errors_are_502(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    provider: str,
    stream: bool,
) -> None:
    response = await client.post(
        CHAT,
        json={"message": "hi", "model": "fail-500", "provider": provider, "stream": stream},
        headers=user[1],
    )
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "BadGateway" and body["providerStatus"] == 500
    assert body["provider"] == provider
    assert body["message"] == (f"{provider} answered 500: The server had an error processing it")

    limited = await client.post(
        CHAT,
        json={"message": "hi", "model": "rate-limited", "provider": provider, "stream": stream},
        headers=user[1],
    )
    assert limited.status_code == 502
    assert limited.json()["providerStatus"] == 429
    assert limited.headers["Retry-After"] == "7"


async def test_rejected_key_is_never_echoed(
    make_client: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    wrong_key = "sk-proj-WRONGkey0123456789abcdefXYZ"
    app = await make_client(
        openai_api_key=wrong_key, openai_base_url=providers.settings()["openai_base_url"]
    )
    tokens = (
        await app.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]
    response = await app.post(
        CHAT,
        json={"message": "hi", "model": "gpt-4o"},
        headers={"Authorization": f"Bearer {tokens['accessToken']}"},
    )
    assert response.status_code == 502
    assert response.json()["providerStatus"] == 401
    assert "Incorrect API key provided: ****" in response.json()["message"]
    assert wrong_key not in response.text and "WRONGkey" not in response.text


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_provider_timeout_is_504(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    provider: str,
    stream: bool,
) -> None:
    response = await client.post(
        CHAT,
        json={"message": "hi", "model": "slow", "provider": provider, "stream": stream},
        headers=user[1],
    )
    assert response.status_code == 504
    body = response.json()
    assert body["error"] == "GatewayTimeout"
    assert body["message"] == f"{provider} did not answer in time"


async def test_unreachable_provider_is_502(make_client: Any) -> None:
    from support import free_port

    app = await make_client(ai_openai_compatible_base_url=f"http://127.0.0.1:{free_port()}/v1")
    tokens = (
        await app.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]
    response = await app.post(
        CHAT,
        json={"message": "hi", "model": "llama3"},
        headers={"Authorization": f"Bearer {tokens['accessToken']}"},
    )
    assert response.status_code == 502
    assert response.json()["message"].startswith("Could not reach openai-compatible")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"messages": [], "model": "m"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}], "model": "m"}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": ""}], "model": "m"}, "messages.0.content"),
        ({"messages": [{"role": "user"}], "model": "m"}, "messages.0.content"),
        ({"messages": [{"role": "system", "content": "only"}], "model": "m"}, "messages"),
        ({"messages": CONVERSATION, "message": "both", "model": "m"}, "message"),
        ({"message": "hi", "model": "has space"}, "model"),
        ({"message": "hi", "model": ""}, "model"),
        ({"message": "hi", "model": "m", "provider": "skynet"}, "provider"),
        ({"message": "hi", "model": "m", "temperature": 2.5}, "temperature"),
        ({"message": "hi", "model": "m", "max_tokens": 0}, "max_tokens"),
        # JSON's true is no number (it was sent on as a temperature of 1).
        ({"message": "hi", "model": "m", "temperature": True}, "temperature"),
        ({"message": "hi", "model": "m", "max_tokens": True}, "max_tokens"),
        ({"message": "hi", "model": "m", "maxTokens": True}, "maxTokens"),  # as spelled
        ({"message": "hi", "model": "m", "stream": "yes please"}, "stream"),
        # Nor is text or a number a boolean (lax mode read "yes" and 1 as true).
        ({"message": "hi", "model": "m", "stream": "yes"}, "stream"),
        ({"message": "hi", "model": "m", "stream": 1}, "stream"),
        ({"message": "x" * 100_001, "model": "m"}, "message"),
        # No AI_DEFAULT_MODEL, and a local server has no default model of its own.
        ({"message": "hi", "provider": "openai-compatible"}, "model"),
        (
            {"message": "hi", "model": "c", "provider": "anthropic", "temperature": 1.5},
            "temperature",
        ),
    ],
)
async def test_bad_input_is_422(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(CHAT, json=body, headers=user[1])
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["success"] is False and error["error"] == "ValidationError"
    assert field in error["errors"], error["errors"]
    assert providers.received == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"messages": [{"role": "system", "content": "x"}]},
            {"messages": ["messages needs at least one user or assistant message"]},
        ),
        (
            {"message": "x", "messages": CONVERSATION},
            {"message": ["Send either messages or message"]},
        ),
        ({"model": "m"}, {"message": ["Send either messages or message"]}),
    ],
)
async def test_checks_across_fields_name_a_field(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    body: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    """They were keyed `body`, as if the whole body were wrong."""
    response = await client.post(CHAT, json=body, headers=user[1])
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == errors


async def test_malformed_json_and_auth(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    api_token_headers: dict[str, str],
) -> None:
    response = await client.post(
        CHAT, content=b'{"message": ', headers={**user[1], "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Malformed JSON in request body"
    anonymous = await client.post(CHAT, json={"message": "hi", "model": "m"})
    assert anonymous.status_code == 401
    # The shared seed-000 API client is no user: usage must belong to someone.
    shared = await client.post(
        CHAT, json={"message": "hi", "model": "m"}, headers=api_token_headers
    )
    assert shared.status_code == 403


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", None])
async def test_the_seeds_browser_call_without_a_json_content_type(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    content_type: str | None,
) -> None:
    # fetch(url, {body: JSON.stringify({message})}) with no Content-Type: the browser
    # sends text/plain;charset=UTF-8 (422 "Input should be a valid dictionary" before).
    headers = {**user[1], "X-Frontend-Source": "flowmind"}
    if content_type is not None:
        headers["Content-Type"] = content_type

    async def post(body: bytes) -> httpx.Response:
        return await client.post(CHAT, content=body, headers=headers)

    response = await post(json.dumps({"message": "Hello AI", "model": "gpt-x"}).encode())
    assert response.status_code == 200, response.text
    assert response.json()["data"]["message"]["content"].endswith("Hello AI")
    assert len(providers.received) == 1
    # The rest of /api/v1's rules hold: malformed JSON 400, validation 422 with fields.
    malformed = await post(b'{"message": ')
    assert malformed.status_code == 400
    assert malformed.json()["message"] == "Malformed JSON in request body"
    invalid = await post(b'{"message": "", "model": "gpt-x"}')
    assert invalid.status_code == 422 and "message" in invalid.json()["errors"]
    empty = await post(b"")
    assert empty.status_code == 422 and "body" in empty.json()["errors"]
    assert len(providers.received) == 1


async def test_openapi_documents_json_and_text_bodies(
    client: httpx.AsyncClient,  # noqa: F811
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, schema in ((CHAT, "ChatIn"), ("/api/v1/swarm/orchestrate", "SwarmIn")):
        content = paths[path]["post"]["requestBody"]["content"]
        ref = {"$ref": f"#/components/schemas/{schema}"}
        assert content["application/json"]["schema"] == ref
        assert content["text/plain"]["schema"] == ref


@pytest.mark.parametrize("stream", [False, True])
async def test_token_counts_no_answer_can_have_count_as_none(
    client: httpx.AsyncClient,  # noqa: F811
    providers: FakeProviders,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    stream: bool,
) -> None:
    """A provider's negative or huge counts are its fault: the answer still arrives (not a
    500 from the metrics or the usage table) and the call is recorded."""
    _, headers = user
    body = {"message": "hello", "model": "bad-usage", "provider": "openai", "stream": stream}
    response = await client.post(CHAT, json=body, headers=headers)
    assert response.status_code == 200, response.text
    zero = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
    if stream:
        assert parse_sse(response.text)[-1][1]["usage"] == zero
    else:
        assert response.json()["data"]["usage"] == zero
    usage = (await client.get("/api/v1/ai/usage", headers=headers)).json()["data"]["items"]
    assert [(r["model"], r["status"]) for r in usage] == [("bad-usage", "ok")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "0001-01-01T00:00:00+05:00"}, "from"),
        ({"to": "9999-12-31T23:59:59-05:00"}, "to"),
        ({"from": "soon"}, "from"),
    ],
)
async def test_usage_dates_out_of_range_are_422(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    params: dict[str, str],
    field: str,
) -> None:
    response = await client.get("/api/v1/ai/usage", params=params, headers=user[1])
    assert response.status_code == 422, response.text
    assert field in response.json()["errors"]
    edges = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    fine = await client.get("/api/v1/ai/usage", params=edges, headers=user[1])
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize(
    "window",
    [
        {"from": "2026-12-09T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        {"from": "2026-12-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        {"from": "2026-12-01T05:00:00+05:00", "to": "2026-12-01T00:00:00Z"},
    ],
)
async def test_usage_window_ending_before_it_starts_is_422(
    client: httpx.AsyncClient,  # noqa: F811
    user: tuple[dict[str, Any], dict[str, str]],
    window: dict[str, str],
) -> None:
    """It answered 200 with no records and zero totals, as if nothing had been used: as
    CityPulse's reports, `to` must come after `from` (`to` is left out of the window)."""
    response = await client.get("/api/v1/ai/usage", params=window, headers=user[1])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == "ValidationError"
    assert body["errors"] == {"to": ["must be after 'from'"]}


async def test_usage_is_recorded_per_user(
    client: httpx.AsyncClient,  # noqa: F811
    create_user: Any,
    admin_headers: dict[str, str],
) -> None:
    alice, alice_headers = await create_user("user")
    _, bob_headers = await create_user("user")
    ok = await client.post(
        CHAT, json={"messages": CONVERSATION, "model": "gpt-a"}, headers=alice_headers
    )
    assert ok.status_code == 200
    streamed = await client.post(
        CHAT,
        json={
            "message": "one two three",
            "model": "claude-b",
            "provider": "anthropic",
            "stream": True,
        },
        headers=alice_headers,
    )
    assert streamed.status_code == 200
    failed = await client.post(
        CHAT, json={"message": "x", "model": "fail-500", "provider": "groq"}, headers=alice_headers
    )
    assert failed.status_code == 502

    own = (await client.get("/api/v1/ai/usage", headers=alice_headers)).json()["data"]
    records = own["items"]
    assert [(r["provider"], r["model"], r["status"], r["stream"]) for r in records] == [
        ("groq", "fail-500", "error", False),
        ("anthropic", "claude-b", "ok", True),
        ("openai", "gpt-a", "ok", False),
    ]
    assert {r["owner"] for r in records} == {f"user:{alice['id']}"}
    assert records[2]["promptTokens"] == 5 and records[2]["totalTokens"] == 9
    assert records[1]["completionTokens"] == 5  # "claude-b says: one two three"
    assert all(isinstance(r["latencyMs"], int) for r in records)
    assert own["totals"] == {
        "calls": 3,
        "errors": 1,
        "promptTokens": 8,
        "completionTokens": 9,
        "totalTokens": 17,
    }

    page = (await client.get("/api/v1/ai/usage?limit=2", headers=alice_headers)).json()["data"]
    assert len(page["items"]) == 2 and page["nextCursor"]
    rest = await client.get(
        f"/api/v1/ai/usage?limit=2&cursor={page['nextCursor']}", headers=alice_headers
    )
    assert [r["id"] for r in rest.json()["data"]["items"]] == [records[2]["id"]]

    bobs = (await client.get("/api/v1/ai/usage", headers=bob_headers)).json()["data"]
    assert bobs["items"] == [] and bobs["totals"]["calls"] == 0
    # Only admins may look at someone else's records.
    filtered = await client.get(
        f"/api/v1/ai/usage?owner=user:{alice['id']}&provider=openai", headers=bob_headers
    )
    assert filtered.json()["data"]["items"] == []
    admin = await client.get(
        f"/api/v1/ai/usage?owner=user:{alice['id']}&provider=openai", headers=admin_headers
    )
    assert [r["model"] for r in admin.json()["data"]["items"]] == ["gpt-a"]

    bad = await client.get("/api/v1/ai/usage?cursor=%%%", headers=alice_headers)
    assert bad.status_code == 400
    # A forged cursor whose moment does not exist in UTC (a 500 when bound before).
    for moment in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        forged = base64.urlsafe_b64encode(json.dumps([moment, "x"]).encode()).decode()
        bad = await client.get(f"/api/v1/ai/usage?cursor={forged}", headers=alice_headers)
        assert bad.status_code == 400 and bad.json()["message"] == "Invalid cursor"
    bad_provider = await client.get("/api/v1/ai/usage?provider=skynet", headers=alice_headers)
    assert bad_provider.status_code == 422

    metrics = (await client.get("/metrics")).text
    assert 'vpsapi_ai_calls_total{provider="groq",status="error"}' in metrics
    assert "vpsapi_ai_call_duration_seconds_bucket" in metrics


async def test_ai_rate_limit_is_per_user(
    make_client: Any,
    providers: FakeProviders,  # noqa: F811
) -> None:
    app = await make_client(
        **providers.settings(), rate_limit_enabled=True, rate_limit_ai="2/15minutes"
    )
    admin = (
        await app.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]
    admin_headers = {"Authorization": f"Bearer {admin['accessToken']}"}
    other = await app.post(
        "/api/v1/users",
        json={"email": "rl-other@example.com", "password": "user-password-123", "role": "user"},
        headers=admin_headers,
    )
    assert other.status_code == 201
    tokens = (
        await app.post(
            "/api/v1/auth/login",
            json={"email": "rl-other@example.com", "password": "user-password-123"},
        )
    ).json()["data"]
    other_headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    body = {"message": "hi", "model": "m"}
    first = await app.post(CHAT, json=body, headers=admin_headers)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert (await app.post(CHAT, json=body, headers=admin_headers)).status_code == 200
    refused = await app.post(CHAT, json=body, headers=admin_headers)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["success"] is False
    # Another user has a budget of their own.
    assert (await app.post(CHAT, json=body, headers=other_headers)).status_code == 200
