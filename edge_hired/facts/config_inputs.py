"""`PlanInputs` from a transformers LLaVA or Qwen-VL config alone, weights counted on meta.

Host-side fact gathering for `plan --model` and `run --model`: torch and transformers build the
model's skeleton without memory, so the pure planner never imports them.
"""

from __future__ import annotations

import math
from typing import Any

from edge_hired.planner.inputs import PlanInputs, parameter_bytes
from edge_hired.planner.shapes import PLAN_MAX_PIXELS, LlmShape, VisionShape
from edge_hired.units import check_quantization, dtype_bytes, normal_dtype


def inputs_from_config(
    config: Any, quantization: str, compute_dtype: str, kv_dtype: str | None = None
) -> PlanInputs:
    """Facts of a transformers LLaVA config, weights counted on the meta device.

    Weight bytes assume bitsandbytes as transformers configures it by default: the Linear
    layers of the language model are quantised (4bit: NF4, 0.5 B/param plus one fp32 absmax
    per 64-value block, no double quantisation; 8bit: 1 B/param plus one fp32 scale per output
    row); embeddings, norms, lm_head, the vision tower and the projector stay in the compute
    dtype. Buffers (rotary tables, position ids) are left out: a few KiB.
    """
    from edge_hired.runtime.loading import NATIVE_FAMILIES, model_facts

    if config.model_type in NATIVE_FAMILIES:
        return native_inputs_from_config(config, quantization, compute_dtype, kv_dtype)
    check_quantization(quantization)
    compute = normal_dtype(compute_dtype)
    facts, text, tower = model_facts(config), config.text_config, config.vision_config
    llm = llm_shape(text, text.num_hidden_layers)
    vision = VisionShape(
        facts.layers.layers_to_run,
        tower.hidden_size,
        tower.intermediate_size,
        tower.num_attention_heads,
        facts.crop_size,
        facts.patch_size,
        facts.family,
        facts.pinpoints,
        has_cls=facts.signal == "cls",
        max_tiles=facts.max_tiles,
        **tiled_vision_fields(facts),
    )
    source = f"config {facts.family} ({llm.num_layers}-layer LLM, {quantization}, {compute})"
    share = (vision.layers_run, tower.num_hidden_layers)
    return _plan_inputs(config, source, llm, vision, quantization, compute, kv_dtype, share)


def llm_shape(text: Any, kv_layers: int, linear_state: int = 0) -> LlmShape:
    """The language model's shape from its text config; `kv_layers` are the layers that hold a
    KV cache (all of them, except in hybrid linear-attention models such as Qwen3.5), and
    `linear_state` the bytes of the other layers' fixed-size state."""
    heads = text.num_attention_heads
    return LlmShape(
        kv_layers,
        text.hidden_size,
        text.intermediate_size,
        heads,
        getattr(text, "num_key_value_heads", None) or heads,
        getattr(text, "head_dim", None) or text.hidden_size // heads,
        text.vocab_size,
        linear_state,
    )


def linear_state_bytes(text: Any, kinds: list[str], compute: str) -> int:
    """One sequence's state in the Gated-DeltaNet layers (Qwen3.5), as transformers keeps it:
    the conv state, the last `kernel` inputs of q, k and v, in the compute dtype; and the
    recurrent state, value heads x key dim x value dim, in float32 whatever the compute dtype
    (both transformers 5.20.2 and 5.23)."""
    layers = kinds.count("linear_attention")
    if not layers:
        return 0
    keys = text.linear_num_key_heads * text.linear_key_head_dim
    values = text.linear_num_value_heads * text.linear_value_head_dim
    conv = (2 * keys + values) * text.linear_conv_kernel_dim * dtype_bytes(compute)
    recurrent = values * text.linear_key_head_dim * dtype_bytes("float32")
    return layers * (conv + recurrent)


def _plan_inputs(
    config: Any,
    source: str,
    llm: LlmShape,
    vision: VisionShape,
    quantization: str,
    compute: str,
    kv_dtype: str | None,
    layers_run: tuple[int, int] = (1, 1),
    notes: tuple[str, ...] = (),
) -> PlanInputs:
    """The model's weights counted on the meta device, with its shapes, as the planner takes them.

    `layers_run` (run, total): the share of the tower's layers a request runs (LLaVA stops at
    the feature layer).
    """
    weights = _count_weights(config, quantization, dtype_bytes(compute))
    run, total = layers_run
    return PlanInputs(
        source=source,
        llm=llm,
        vision=vision,
        quantization=quantization,
        compute_dtype=compute,
        kv_dtype=normal_dtype(kv_dtype or compute),
        vision_dtype=compute,
        llm_weight_bytes=weights["llm"],
        encoder_weight_bytes=weights["encoder"],
        llm_matmul_params=weights["llm_matmul"],
        vision_matmul_params=weights["encoder_matmul"] * run // total,
        largest_quantized_linear=weights["largest"],
        notes=notes,
    )


def tiled_vision_fields(facts: Any) -> dict[str, int]:
    """InternVL / SmolVLM tiling settings for `VisionShape` (none for the LLaVA families)."""
    if not hasattr(facts, "tile_family"):
        return {}
    return {
        "tile_merge": facts.merge,
        "min_tiles": facts.min_tiles,
        "longest_edge": facts.longest_edge,
    }


def _count_weights(config: Any, quantization: str, size: int) -> dict[str, int]:
    """Bytes and Linear parameter counts of the LLM and encoder sides, on the meta device."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    inner = model.model
    language = inner.text_model if hasattr(inner, "text_model") else inner.language_model
    llm_side = {id(m) for m in language.modules()} | {id(m) for m in model.lm_head.modules()}
    linear = torch.nn.Linear
    quantized = (
        set()
        if quantization == "none"
        else {id(m) for m in language.modules() if isinstance(m, linear)}
    )
    totals = dict.fromkeys(("llm", "encoder", "llm_matmul", "encoder_matmul", "largest"), 0)
    seen: set[int] = set()
    for module in model.modules():
        side = "llm" if id(module) in llm_side else "encoder"
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue  # tied weights count once
            seen.add(id(param))
            is_weight = isinstance(module, linear) and name == "weight"
            scheme = quantization if is_weight and id(module) in quantized else "none"
            totals[side] += parameter_bytes(tuple(param.shape), scheme, size)
            totals[f"{side}_matmul"] += param.numel() if is_weight else 0
            if scheme != "none":
                totals["largest"] = max(totals["largest"], param.numel())
    return totals


def native_inputs_from_config(
    config: Any,
    quantization: str,
    compute_dtype: str,
    kv_dtype: str | None = None,
    max_pixels: int = PLAN_MAX_PIXELS,
    min_pixels: int = 3136,
) -> PlanInputs:
    """Facts of a Qwen-VL config (Qwen3-VL, Qwen2.5-VL, Qwen3.5), weights on the meta device.

    One partition of merge units; the encoder sees merge^2 patches per token. Only the LLM's
    full-attention layers hold a KV cache; Qwen3.5's linear-attention layers keep a fixed-size
    state, a fixed cost per request (`LlmShape.linear_state_bytes`).
    """
    check_quantization(quantization)
    compute = normal_dtype(compute_dtype)
    text = config.text_config
    kinds = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    full, linear = kinds.count("full_attention"), linear_state_bytes(text, kinds, compute)
    llm = llm_shape(text, full, linear)
    vision = native_vision_shape(config, min(min_pixels, max_pixels), max_pixels)
    source = (
        f"config {config.model_type} ({text.num_hidden_layers}-layer LLM, "
        f"{quantization}, {compute})"
    )
    notes = (f"native resolution: images up to {max_pixels} px (max_pixels)",)
    return _plan_inputs(config, source, llm, vision, quantization, compute, kv_dtype, notes=notes)


def native_vision_shape(config: Any, min_pixels: int, max_pixels: int) -> VisionShape:
    """The tower as the planner sees it: all blocks run, one partition of merge units."""
    tower = config.vision_config
    return VisionShape(
        int(tower.depth),
        tower.hidden_size,
        tower.intermediate_size,
        tower.num_heads,
        math.isqrt(max_pixels),  # pixel values: about max_pixels per channel
        tower.patch_size,
        config.model_type,
        has_cls=False,
        merge=int(tower.spatial_merge_size),
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )
