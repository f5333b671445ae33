"""The CLS row of a ViT layer's attention, computed from its queries and keys alone.

HiRED needs only how much the CLS token attends to each patch. Materialising the full N x N
map (`output_attentions=True`) costs O(N^2) memory per head per layer; the CLS row costs O(N).
The same function serves the in-process encoder and the ONNX export graph.
"""

from __future__ import annotations

import torch


def cls_attention_rows(queries: torch.Tensor, keys: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Softmax of q_cls . k_j / sqrt(head_dim) over all keys, at the patch keys only.

    queries, keys: [P, 1 + N, D] projections of one layer (CLS first). Returns [P, heads, N] in
    float32; the CLS column is dropped and the row is not re-normalised (HIRED.md "Terms").
    """
    parts, tokens, dim = keys.shape
    head_dim = dim // num_heads
    q_cls = queries[:, 0].float().reshape(parts, num_heads, 1, head_dim)
    k = keys.float().reshape(parts, tokens, num_heads, head_dim).transpose(1, 2)
    logits = torch.matmul(q_cls, k.transpose(-1, -2)).squeeze(2) * head_dim**-0.5
    return torch.softmax(logits, dim=-1)[:, :, 1:]
