"""Pydantic models of a chat-completions request (OpenAI's field names) and the `hired` extension.

Unknown top-level fields are ignored, as OpenAI-compatible servers do; values the server cannot
honour (n > 1, a budget outside (0, 1]) fail validation here, which `app` reports as a 400.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_hired.hired import STRATEGIES

Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]


class _Loose(BaseModel):
    """Ignore fields this server does not use (clients send many)."""

    model_config = ConfigDict(extra="ignore")


class TextPart(_Loose):
    type: Literal["text"]
    text: str


class ImageUrl(_Loose):
    url: str
    detail: str | None = None


class ImagePart(_Loose):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Loose):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Loose):
    include_usage: bool = False


class HiredOptions(BaseModel):
    """Per-request selection settings; the server's flags are the defaults."""

    model_config = ConfigDict(extra="forbid")

    budget: float | None = Field(default=None, gt=0, le=1)
    tokens: int | None = Field(default=None, ge=1)
    strategy: Strategy | None = None
    alpha: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_budget(self) -> HiredOptions:
        if self.budget is not None and self.tokens is not None:
            raise ValueError("give hired.budget or hired.tokens, not both")
        return self


class ChatRequest(_Loose):
    """POST /v1/chat/completions."""

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    top_k: int | None = Field(default=None, ge=1)  # extension (vLLM's), as `run --top-k`
    repetition_penalty: float | None = Field(default=None, gt=0)  # extension, `run`'s flag
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    hired: HiredOptions | None = None

    def stop_strings(self) -> tuple[str, ...]:
        """`stop` as a tuple of non-empty strings."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(s for s in stops if s)

    def include_usage(self) -> bool:
        """Whether the stream ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)
