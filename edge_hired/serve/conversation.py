"""Chat messages -> the model's chat template -> prompt ids split at the one image placeholder.

The ids before the placeholder plus the kept visual tokens form the *prefix*, whose KV cache a
follow-up question about the same image reuses; the ids after it are the *suffix*, the only
text a cache hit prefills. `runtime.prompts.conversation_ids` tokenizes it, as it does `run`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from edge_hired.runtime.prompts import conversation_ids
from edge_hired.serve.api_errors import bad_request
from edge_hired.serve.schemas import ImagePart, Message

MAX_IMAGES = 1


@dataclass(frozen=True)
class PromptIds:
    """The prompt's token ids around the image placeholder (`image_url` None: no image)."""

    prefix: torch.Tensor
    suffix: torch.Tensor
    image_url: str | None

    @property
    def text_tokens(self) -> int:
        """Text positions the prompt takes (the placeholder excluded)."""
        return len(self.prefix) + len(self.suffix)


def template_messages(messages: list[Message]) -> tuple[list[dict[str, Any]], str | None]:
    """Messages in the processor's chat-template format, and the one image URL (if any)."""
    converted, urls = [], []
    for message in messages:
        content = message.content
        if content is None or isinstance(content, str):
            converted.append({"role": message.role, "content": content or ""})
            continue
        parts = []
        for part in content:
            if isinstance(part, ImagePart):
                if message.role != "user":
                    raise bad_request("images: expected in user messages only", "messages")
                urls.append(part.image_url.url)
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part.text})
        converted.append({"role": message.role, "content": parts})
    if len(urls) > MAX_IMAGES:
        raise bad_request(
            f"images: at most {MAX_IMAGES} image per conversation, got {len(urls)}", "messages"
        )
    return converted, (urls[0] if urls else None)


def prompt_ids(processor: Any, messages: list[Message], image_token_id: int) -> PromptIds:
    """Tokenize the templated conversation and split it at the image placeholder."""
    conversation, url = template_messages(messages)
    ids = conversation_ids(processor, conversation)
    hits = (ids == image_token_id).nonzero().flatten().tolist()
    if len(hits) != (0 if url is None else 1):
        raise bad_request("text: the image placeholder token is reserved", "messages")
    if url is None:
        return PromptIds(ids[:0], ids, None)
    return PromptIds(ids[: hits[0]], ids[hits[0] + 1 :], url)
