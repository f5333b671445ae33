"""OpenAI's response shapes: `chat.completion`, `chat.completion.chunk`, `usage`, plus `hired`.

`usage.prompt_tokens` counts every position the LLM attended to before answering (text, kept
visual tokens, newlines); `cached_tokens` those whose KV came from the image cache.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from edge_hired.runtime.engine import Prefill


@dataclass
class Outcome:
    """What the worker reported for one request, gathered as it streams."""

    created: int = field(default_factory=lambda: int(time.time()))
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    prefill: Prefill | None = None
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    ttft_s: float | None = None
    capped_by_memory: bool = False

    def usage(self) -> dict[str, Any]:
        prompt = self.prefill.prompt_tokens if self.prefill else 0
        cached = self.prefill.prefix.length if self.prefill and self.prefill.cache_hit else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": len(self.token_ids),
            "total_tokens": prompt + len(self.token_ids),
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def hired(self) -> dict[str, Any]:
        prefix = self.prefill.prefix if self.prefill else None
        return {
            "strategy": prefix.strategy if prefix else "none",
            "budget_tokens": prefix.budget_tokens if prefix else 0,
            "visual_tokens_total": prefix.visual_tokens_total if prefix else 0,
            "visual_tokens_kept": prefix.visual_tokens_kept if prefix else 0,
            "ttft_s": self.ttft_s,
            "image_cache": "hit" if self.prefill and self.prefill.cache_hit else "miss",
            "capped_by_memory": self.capped_by_memory,
            "completion_token_ids": list(self.token_ids),
        }


def completion(outcome: Outcome, model: str, text: str) -> dict[str, Any]:
    """The non-streaming response."""
    return {
        "id": outcome.id,
        "object": "chat.completion",
        "created": outcome.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": outcome.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": outcome.usage(),
        "hired": outcome.hired(),
    }


def chunk(outcome: Outcome, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    """One SSE event carrying a `chat.completion.chunk` with one choice."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return _event({**_chunk_head(outcome, model), "choices": [choice]})


def usage_chunk(outcome: Outcome, model: str) -> str:
    """The last chunk with `include_usage`: no choices, the usage and the hired figures."""
    body = {**_chunk_head(outcome, model), "choices": [], "usage": outcome.usage()}
    return _event({**body, "hired": outcome.hired()})


DONE = "data: [DONE]\n\n"


def _chunk_head(outcome: Outcome, model: str) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "object": "chat.completion.chunk",
        "created": outcome.created,
        "model": model,
    }


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
