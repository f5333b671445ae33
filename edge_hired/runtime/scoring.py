"""Score a given continuation under a loaded pipeline (lmms-eval's loglikelihood requests).

Kept in runtime/ because it drives the language model directly: callers pass the prompt's
embeddings (`Pipeline.input_embeddings`) and the continuation's token ids.
"""

from __future__ import annotations

import torch

from edge_hired.runtime.pipeline import Pipeline


def continuation_logprobs(
    pipeline: Pipeline, prompt: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """[N, vocab] log-probabilities at each continuation token after [1, T, D] `prompt`."""
    llm = pipeline.parts.llm
    embeds = torch.cat([prompt, llm.get_input_embeddings()(ids).to(prompt.dtype)], dim=1)
    logits = llm(inputs_embeds=embeds).logits[0, prompt.shape[1] - 1 : -1].float()
    return logits.log_softmax(dim=-1)
