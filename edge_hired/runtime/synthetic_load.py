"""Synthetic work on a loaded pipeline, for the memory probes of `profile calibrate`.

A probe measures the peak of one phase above a warm baseline; these run the model's parts on
inputs made here (random prompt embeddings of a given length), so the probe never needs to reach
into the pipeline's parts from outside `runtime/`.
"""

from __future__ import annotations

import torch

from edge_hired.runtime.pipeline import Pipeline


def random_embeddings(pipeline: Pipeline, tokens: int, seed: int = 0) -> torch.Tensor:
    """[1, tokens, D] embeddings drawn from a fixed seed, on the LLM's device and dtype."""
    table = pipeline.parts.llm.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(1, tokens, table.shape[1], generator=generator)
    return values.to(device=table.device, dtype=table.dtype)


@torch.inference_mode()
def warm_once(pipeline: Pipeline, pixels: torch.Tensor) -> None:
    """The encoder on one partition and the LLM on one token: weights paged in, buffers made."""
    pipeline.encode(pixels[:1])
    pipeline.parts.llm(inputs_embeds=random_embeddings(pipeline, 1))


@torch.inference_mode()
def prefill_and_decode(pipeline: Pipeline, embeds: torch.Tensor, new_tokens: int = 2) -> None:
    """A prefill over `embeds` and `new_tokens` greedy steps (the request's LLM phase)."""
    pipeline.parts.llm.generate(
        inputs_embeds=embeds,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
    )
