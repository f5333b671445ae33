"""Run a stock CLIP / SigLIP tower up to LLaVA's feature layer and capture HiRED's signal.

The encoder layers are called one by one on the model's own modules, so the layers after the
feature layer never run. Queries and keys of the two HiRED layers are read with forward hooks
that live only for the call; nothing in transformers is replaced.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from edge_hired.errors import ModelLoadError, expected
from edge_hired.runtime.towers import Tower, tower_of


@dataclass(frozen=True)
class VisionOutput:
    """What the encoder hands to token selection: features and the attention signal.

    `cls_init` / `cls_final` hold the signal named by `signal`: CLS rows ("cls", CLIP) or the
    attention each patch receives ("received", SigLIP).
    """

    features: torch.Tensor  # [P, N, D] feature-layer hidden states, CLS removed
    cls_init: torch.Tensor  # [P, heads, N] float32, layer l_init
    cls_final: torch.Tensor  # [P, heads, N] float32, layer l_final
    keys_final: torch.Tensor  # [P, N, D] patch keys of layer l_final (PruMerge similarity)
    signal: str = "cls"

    @property
    def nbytes(self) -> int:
        """Bytes of its tensors (what keeping it in a cache costs)."""
        tensors = (self.features, self.cls_init, self.cls_final, self.keys_final)
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class LayerPlan:
    """Which encoder layers run and which ones HiRED reads."""

    layers_to_run: int
    l_init: int
    l_final: int


def plan_layers(
    vision_feature_layer: int, num_layers: int, l_init: int = 0, l_final: int | None = None
) -> LayerPlan:
    """Resolve LLaVA's `vision_feature_layer` (hidden-state index) into layers to run.

    hidden_states[k] is the output of k layers, so -2 on a 24-layer tower means 23 layers run
    and the feature layer is layer index 22, HiRED's default l_final.
    """
    if not isinstance(vision_feature_layer, int):
        raise ModelLoadError(
            expected(
                "vision_feature_layer",
                "one int (multi-layer features are unsupported)",
                vision_feature_layer,
            )
        )
    run = (
        vision_feature_layer if vision_feature_layer >= 0 else num_layers + 1 + vision_feature_layer
    )
    if not 1 <= run <= num_layers:
        raise ModelLoadError(expected("vision_feature_layer", f"a layer of 1..{num_layers}", run))
    final = run - 1 if l_final is None else l_final
    for name, layer in (("l_init", l_init), ("l_final", final)):
        if not 0 <= layer < run:
            raise ModelLoadError(expected(name, f"a layer index in 0..{run - 1}", layer))
    return LayerPlan(run, l_init, final)


class TorchVisionEncoder:
    """CLIP / SigLIP tower -> features of the feature layer plus the signal of two layers."""

    def __init__(self, vision_tower: nn.Module, plan: LayerPlan) -> None:
        self.tower: Tower = tower_of(vision_tower)
        self.plan = plan
        self.num_heads = self.tower.num_heads

    @property
    def provider(self) -> str:
        """What runs the encoder: PyTorch on its weights' device."""
        return f"torch:{self._weight().device.type}"

    def _weight(self) -> torch.Tensor:
        return self.tower.embeddings.patch_embedding.weight

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor) -> VisionOutput:
        """Encode [P, 3, H, W] pixel values."""
        layers = self.tower.layers
        watched = sorted({self.plan.l_init, self.plan.l_final})
        with _capture_qk(layers, watched) as captured:
            weight = self._weight()
            hidden = self.tower.embed(pixel_values.to(device=weight.device, dtype=weight.dtype))
            for layer in layers[: self.plan.layers_to_run]:
                hidden = layer(hidden, None)
        rows = {i: self.tower.signal_rows(*captured[i]) for i in watched}
        keys = self.tower.patches(captured[self.plan.l_final][1])
        return VisionOutput(
            self.tower.patches(hidden),
            rows[self.plan.l_init],
            rows[self.plan.l_final],
            keys,
            self.tower.signal,
        )


def _capture_qk(layers: nn.ModuleList, indices: list[int]):
    """Record q_proj / k_proj outputs of the given layers while the context is open."""
    pairs = {i: (layers[i].self_attn.q_proj, layers[i].self_attn.k_proj) for i in indices}
    return capture_outputs(pairs, indices)


@contextmanager
def capture_outputs(
    pairs: Mapping[int, tuple[nn.Module, nn.Module]] | Sequence[tuple[nn.Module, nn.Module]],
    indices: list[int],
) -> Iterator[dict[int, list]]:
    """Record the (query, key) module outputs of layers `indices` while the context is open:
    forward hooks that live for one call, so nothing in transformers is patched."""
    captured: dict[int, list] = {i: [None, None] for i in indices}
    handles = [
        module.register_forward_hook(_store(captured[i], slot))
        for i in indices
        for slot, module in enumerate(pairs[i])
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _store(target: list, slot: int):
    """A forward hook that keeps a module's output in target[slot]."""

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        target[slot] = output

    return hook
