"""Request and response shapes of /api/v1/ai and /api/v1/swarm."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from vpsapi.citypulse.ai.providers import DEFAULT_MODELS, ProviderName
from vpsapi.core.schemas import CamelModel, JsonBool, NumberNotBool, field_error

# Model ids as providers spell them: `gpt-4o-mini`, `claude-3-5-haiku-latest`,
# `llama3.1:8b` (Ollama), `meta-llama/Llama-3.1-8B-Instruct` (vLLM).
ModelId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]+$")]
MaxTokens = Annotated[
    NumberNotBool[Annotated[int, Field(ge=1, le=200_000)]] | None,
    Field(default=None, validation_alias=AliasChoices("max_tokens", "maxTokens")),
]
Temperature = Annotated[
    NumberNotBool[Annotated[float, Field(ge=0, le=2)]] | None, Field(default=None)
]
MAX_MESSAGE_CHARS = 100_000
MODEL_DEFAULT = (
    "default: AI_DEFAULT_MODEL, else the provider's own ("
    + ", ".join(f"{name} `{model}`" for name, model in DEFAULT_MODELS.items())
    + "); openai-compatible has none, a request to it names its model"
)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class ChatIn(BaseModel):
    """`messages` (OpenAI style), or the seed's FlowMind shorthand `message`."""

    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=100)
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="shorthand for one user message",
    )
    model: ModelId | None = Field(default=None, description=MODEL_DEFAULT)
    provider: ProviderName | None = Field(
        default=None, description="default: AI_DEFAULT_PROVIDER, else the first configured"
    )
    stream: JsonBool = False
    temperature: Temperature = None
    max_tokens: MaxTokens = None

    @model_validator(mode="after")
    def _one_conversation(self) -> ChatIn:
        if (self.messages is None) == (self.message is None):
            raise field_error(ChatIn, "message", "Send either messages or message", self.message)
        if self.messages is not None and all(m.role == "system" for m in self.messages):
            raise field_error(
                ChatIn,
                "messages",
                "messages needs at least one user or assistant message",
                [m.model_dump() for m in self.messages],
            )
        return self

    def conversation(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.message or ""}]


class UsageOut(CamelModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatOut(CamelModel):
    provider: str
    model: str
    message: AssistantMessage
    usage: UsageOut
    latency_ms: int


class ProviderOut(CamelModel):
    name: str
    default: bool = Field(description="used when a chat request names no provider")
    default_model: str | None = Field(
        description="asked for when a chat request to it names no model: AI_DEFAULT_MODEL, "
        "else the provider's own; null: a request to it must name one (openai-compatible)"
    )


class UsageRecordOut(CamelModel):
    id: str
    owner: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: int
    status: str
    stream: bool
    job_id: str | None = None
    created_at: datetime


class UsageTotals(CamelModel):
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsagePage(CamelModel):
    items: list[UsageRecordOut]
    next_cursor: str | None = None
    totals: UsageTotals = Field(description="over every record the filters match")


# ---- swarm ---------------------------------------------------------------------------

AgentName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w .:-]+$")]


class AgentIn(BaseModel):
    name: AgentName
    provider: ProviderName | None = None
    model: ModelId | None = Field(default=None, description=MODEL_DEFAULT)
    system: str | None = Field(default=None, max_length=20_000)
    temperature: Temperature = None
    max_tokens: MaxTokens = None


class AggregateIn(BaseModel):
    """A final call that combines the agents' answers: the model of one agent (`agent`)
    or any `provider` + `model`, with an optional `system` prompt and `instructions`."""

    agent: AgentName | None = None
    provider: ProviderName | None = None
    model: ModelId | None = Field(default=None, description=MODEL_DEFAULT)
    system: str | None = Field(default=None, max_length=20_000)
    instructions: str | None = Field(default=None, max_length=20_000)

    @model_validator(mode="after")
    def _agent_or_model(self) -> AggregateIn:
        if self.agent is not None and (self.provider or self.model):
            raise ValueError("Name either an agent or a provider/model, not both")
        return self


class SwarmIn(BaseModel):
    task: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    agents: list[AgentIn] = Field(min_length=1, max_length=10)
    strategy: Literal["parallel", "sequential"] = "parallel"
    aggregate: AggregateIn | None = Field(
        default=None,
        description='omit (or "concat") to join the answers; an object asks one more model '
        "to combine them",
    )

    @field_validator("aggregate", mode="before")
    @classmethod
    def _concat(cls, value: Any) -> Any:
        if value == "concat":
            return None
        if isinstance(value, str):
            raise ValueError('aggregate must be "concat" or an object')
        return value

    @model_validator(mode="after")
    def _names(self) -> SwarmIn:
        names = [agent.name for agent in self.agents]
        if len(set(names)) != len(names):
            raise field_error(SwarmIn, "agents", "Agent names must be unique", names)
        chosen = self.aggregate.agent if isinstance(self.aggregate, AggregateIn) else None
        if chosen is not None and chosen not in names:
            raise field_error(
                SwarmIn, "aggregate.agent", f"aggregate.agent {chosen!r} is not an agent", chosen
            )
        return self


class SwarmLinks(BaseModel):
    status: str
    events: str
    cancel: str


class SwarmAccepted(CamelModel):
    job_id: str
    status: str
    strategy: str
    agents: int
    links: SwarmLinks
