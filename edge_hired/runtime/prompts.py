"""A chat conversation as the model's prompt token ids: its chat template, or a plain fallback.

One place for `run` (one user turn) and `serve` (whole conversations), so both tokenize a
prompt exactly alike and the server's answers equal the CLI's.
"""

from __future__ import annotations

from typing import Any

import torch


def conversation_ids(processor: Any, conversation: list[dict[str, Any]]) -> torch.Tensor:
    """Token ids of `conversation` (chat-template messages) with a generation prompt."""
    if getattr(processor, "chat_template", None):
        text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    else:
        text = plain_prompt(conversation, processor.image_token)
    return processor.tokenizer(text, return_tensors="pt")["input_ids"][0]


def plain_prompt(conversation: list[dict[str, Any]], image_token: str) -> str:
    """Without a chat template: each image as its token and a new line, then the text."""
    pieces = []
    for message in conversation:
        content = message["content"]
        if isinstance(content, str):
            pieces.append(content)
            continue
        for part in content:
            pieces.append(f"{image_token}\n" if part["type"] == "image" else part["text"])
    return "".join(pieces)
