"""What clients send, checked: the chat completion request (the OpenAI fields this server honours) and the session
endpoints' bodies. Unknown OpenAI fields are accepted and ignored, as OpenAI's own clients send some."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deltamem.rendering import ROLES


class TextPart(BaseModel):
    """One part of a message's content list; only text parts can be read."""

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[TextPart]

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        role = "system" if role == "developer" else role
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        return role

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """`POST /v1/chat/completions`. Greedy unless `temperature` > 0 (the default is 0, so replies repeat)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = 0
    user: str | None = None
    n: int = Field(default=1, ge=1, le=1)


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizon: int = Field(default=8192, ge=1)
    stop_at_horizon: bool = False


class NewSession(BaseModel):
    """`POST /v1/sessions`: a context policy (`full` or `window:N`) and a write budget, else the server's."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = None
    budget: BudgetBody | None = None


class DocumentBody(BaseModel):
    """`POST /v1/sessions/{id}/documents`: text written into the δ-mem lane's memory, without a reply."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    title: str = "document"
    lanes: list[str] | None = None
