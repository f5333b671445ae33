"""The attention each patch receives, for towers without a CLS token (SigLIP).

HIRED.md "Encoders without a CLS token": R[p, h, t] is the mean over all N queries of the
softmax attention key t receives. It is computed from the layer's queries and keys in query
chunks, so a head never holds more than chunk x N scores; N x N maps are never kept. The same
function serves the in-process encoder and the ONNX export graph (the chunk loop unrolls there).
"""

from __future__ import annotations

import torch

QUERY_CHUNK = 128
"""Queries per block: chunk x N fp32 scores per head and partition (128 x 729 = 0.37 MB)."""


def received_attention_rows(
    queries: torch.Tensor, keys: torch.Tensor, num_heads: int, chunk: int = QUERY_CHUNK
) -> torch.Tensor:
    """Mean over queries of softmax(q . k_j / sqrt(head_dim)), per key: [P, heads, N] float32.

    queries, keys: [P, N, D] projections of one layer (no CLS token).
    """
    parts, tokens, dim = keys.shape
    head_dim = dim // num_heads
    q = queries.float().reshape(parts, tokens, num_heads, head_dim).transpose(1, 2)
    k_t = keys.float().reshape(parts, tokens, num_heads, head_dim).permute(0, 2, 3, 1)
    total = torch.zeros(parts, num_heads, tokens, dtype=torch.float32, device=keys.device)
    for start in range(0, tokens, chunk):
        logits = torch.matmul(q[:, :, start : start + chunk], k_t) * head_dim**-0.5
        total = total + torch.softmax(logits, dim=-1).sum(dim=2)
    return total / tokens
