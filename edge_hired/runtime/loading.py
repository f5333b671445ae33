"""Load a LLaVA-NeXT, LLaVA-1.5, LLaVA-OneVision or Qwen-VL checkpoint into the parts HiRED needs.

A hub id and a local directory take the same path: `from_pretrained`. The parts are the vision
encoder with CLS rows, the projector, `image_newline`, the generating LLM and the processor,
plus the geometry facts of the model, so the pipeline never reaches into the model's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
)

from edge_hired.device.torch_device import placement
from edge_hired.errors import ModelLoadError, expected
from edge_hired.hired.geometry import (
    ImageGeometry,
    anyres_geometry,
    onevision_geometry,
    single_geometry,
)
from edge_hired.hired.native_geometry import NativeGeometry, native_geometry
from edge_hired.runtime.processors import load_image_text_processor, load_processor
from edge_hired.runtime.qwen_vision import QwenVisionEncoder, signal_block
from edge_hired.runtime.tiled_facts import TiledFacts, is_tiled, tiled_facts
from edge_hired.runtime.tiled_loading import (
    TILED_KEEP_UNQUANTIZED,
    TILED_MODEL_CLASSES,
    load_tiled_processor,
    tiled_modules,
)
from edge_hired.runtime.towers import SIGNALS
from edge_hired.runtime.vision import LayerPlan, TorchVisionEncoder, VisionOutput, plan_layers

FAMILIES: dict[str, type] = {
    "llava_next": LlavaNextForConditionalGeneration,
    "llava": LlavaForConditionalGeneration,
    "llava_onevision": LlavaOnevisionForConditionalGeneration,
    **TILED_MODEL_CLASSES,  # InternVL3/3.5, SmolVLM2, Idefics3 (runtime.tiled_loading)
}
#: The native-resolution families (one image at its own aspect ratio, 2 x 2 merge units): the
#: stock class of each, loaded by `load_native_parts` with `NativeFacts`.
NATIVE_FAMILIES: dict[str, str] = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_5": "Qwen3_5ForConditionalGeneration",
}
#: The feature-select strategy each signal's tower needs: CLIP drops its CLS, SigLIP keeps all.
SELECT_STRATEGY = {"cls": "default", "received": "full"}


@dataclass(frozen=True)
class ModelFacts:
    """Geometry facts of a model: all that token selection needs to know about it."""

    family: str
    crop_size: int
    patch_size: int
    num_heads: int
    pinpoints: tuple[tuple[int, int], ...]
    layers: LayerPlan
    image_token_id: int
    signal: str = "cls"  # "cls" (CLIP) or "received" (SigLIP)
    max_tiles: int = 0  # OneVision's anyres_max_K; 0 for the other families

    def geometry_for(self, image_size: tuple[int, int]) -> ImageGeometry:
        """Token geometry of an image of (height, width)."""
        size, pins, crop, patch = image_size, self.pinpoints, self.crop_size, self.patch_size
        if self.family == "llava_onevision":
            return onevision_geometry(size, pins, crop, patch, self.max_tiles)
        if self.family == "llava_next":
            return anyres_geometry(size, pins, crop, patch)
        return single_geometry(size, crop, patch)


@dataclass(frozen=True)
class NativeFacts(ModelFacts):
    """A Qwen-VL model's facts: patch, merge and the processor's pixel limits (`smart_resize`)."""

    merge: int = 2
    min_pixels: int = 0
    max_pixels: int = 0

    def geometry_for(self, image_size: tuple[int, int]) -> NativeGeometry:  # type: ignore[override]
        """The merged-grid geometry of an image of (height, width)."""
        limits = self.min_pixels, self.max_pixels
        return native_geometry(image_size, self.patch_size, self.merge, *limits)


@dataclass(frozen=True)
class LoadedModel:
    """What a loader really loaded, recorded by it: the planner's facts read this, not guesses."""

    compute_dtype: str  # full name: float32 / float16 / bfloat16
    quantization: str  # none / 8bit / 4bit
    llm_weight_bytes: int | None = None  # the LLM's parameters as loaded (bundles: own module)
    projector_bytes: int | None = None  # the projector's parameters as loaded


@dataclass
class VlmParts:
    """A loaded model taken apart along HiRED's seams."""

    facts: ModelFacts | TiledFacts
    processor: Any
    encoder: Callable[[torch.Tensor], VisionOutput]
    projector: Callable[[torch.Tensor], torch.Tensor]
    image_newline: torch.Tensor | None
    llm: torch.nn.Module
    device: torch.device
    compute_dtype: torch.dtype | None = None  # of the LLM and projector; None: the LLM's own
    loaded: LoadedModel | None = None  # what the loader loaded; None: read from the modules


def resolve_source(model_id: str) -> str:
    """A local directory as an absolute path, anything else as the hub id it is."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if path.exists() else model_id


def read_config(model_id: str, revision: str | None = None) -> Any:
    """The checkpoint's config (at `revision`, for a hub id), or a one-line reason why it is not
    a model."""
    path = Path(model_id).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ModelLoadError(f"{model_id}: expected a model directory with config.json, got none")
    if not path.exists() and (model_id.startswith((".", "/", "~")) or model_id.count("/") > 1):
        raise ModelLoadError(f"{model_id}: no such model directory")
    try:
        return AutoConfig.from_pretrained(
            str(path) if path.exists() else model_id, revision=revision
        )
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{model_id}: cannot load a model config ({first})") from error


def model_facts(
    config: Any, l_init: int = 0, l_final: int | None = None
) -> ModelFacts | TiledFacts:
    """Facts from a LLaVA config; refuses families and towers HiRED cannot serve.

    A tiled config (InternVL, SmolVLM) gives `TiledFacts` with the reference processor settings.
    """
    if is_tiled(config):
        return tiled_facts(config, None, l_init, l_final)
    family = config.model_type
    if family not in FAMILIES:
        raise ModelLoadError(expected("model type", " or ".join(FAMILIES), family))
    vision = config.vision_config
    signal = tower_signal(config)
    plan = plan_layers(config.vision_feature_layer, vision.num_hidden_layers, l_init, l_final)
    pins = tuple(
        tuple(int(v) for v in p) for p in getattr(config, "image_grid_pinpoints", []) or []
    )
    return ModelFacts(
        family,
        vision.image_size,
        vision.patch_size,
        vision.num_attention_heads,
        pins,
        plan,
        config.image_token_id,
        signal,
        max_tiles(config) if family == "llava_onevision" else 0,
    )


def tower_signal(config: Any) -> str:
    """HiRED's signal for the config's tower, refusing towers and strategies it cannot serve."""
    tower = config.vision_config.model_type
    if tower not in SIGNALS:
        raise ModelLoadError(expected("vision tower", " or ".join(SIGNALS), tower))
    signal = SIGNALS[tower]
    strategy = getattr(config, "vision_feature_select_strategy", "default")
    if strategy != SELECT_STRATEGY[signal]:
        want = f"{SELECT_STRATEGY[signal]} (for a {tower} tower)"
        raise ModelLoadError(expected("vision_feature_select_strategy", want, strategy))
    return signal


def max_tiles(config: Any) -> int:
    """K of OneVision's `vision_aspect_ratio = "anyres_max_K"`."""
    text = str(getattr(config, "vision_aspect_ratio", "anyres_max_9"))
    count = text.removeprefix("anyres_max_")
    if not count.isdigit() or int(count) < 1:
        raise ModelLoadError(expected("vision_aspect_ratio", "anyres_max_<K >= 1>", text))
    return int(count)


#: Full module paths bitsandbytes must leave alone when `run --model --quant` quantizes at load:
#: HiRED reads the vision tower's q/k projections, the projector runs on kept tokens only, and
#: giving any skip list makes transformers quantize `lm_head` unless it is listed too.
KEEP_UNQUANTIZED = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


def load_kwargs(
    device: torch.device,
    dtype: torch.dtype,
    quantization: str = "none",
    keep: list[str] = KEEP_UNQUANTIZED,
) -> dict:
    """`from_pretrained` arguments that put the weights on `device` as they are read.

    Loading on the CPU and then calling `.to(device)` holds the weights twice; on a Jetson's
    unified memory that is twice the model in the same RAM. `device_map` streams each tensor to
    the device, and with `quantization` ("8bit" / "4bit") bitsandbytes quantizes it on the way.
    """
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": placement(device)}}
    if quantization != "none":
        from edge_hired.device.bitsandbytes_check import require_bitsandbytes
        from edge_hired.runtime.language_model import bitsandbytes_config, check_choice

        check_choice(quantization, dtype)
        require_bitsandbytes(quantization, device)
        kwargs["quantization_config"] = bitsandbytes_config(quantization, dtype, keep)
    return kwargs


def load_parts(
    model_id: str,
    device: torch.device,
    dtype: torch.dtype,
    l_init: int = 0,
    l_final: int | None = None,
    quantization: str = "none",
) -> VlmParts:
    """Load model and processor with `from_pretrained` (straight onto `device`), split them."""
    config = read_config(model_id)
    if config.model_type in NATIVE_FAMILIES:
        return load_native_parts(config, model_id, device, dtype, l_final, quantization)
    if is_tiled(config):
        return load_tiled_parts(config, model_id, device, dtype, l_init, l_final, quantization)
    facts = model_facts(config, l_init, l_final)
    source = resolve_source(model_id)
    kwargs = load_kwargs(device, dtype, quantization)
    model = FAMILIES[facts.family].from_pretrained(source, **kwargs).eval()
    processor = load_processor(source, facts.family)
    inner = model.model
    return VlmParts(
        facts=facts,
        processor=processor,
        encoder=TorchVisionEncoder(inner.vision_tower, facts.layers),
        projector=inner.multi_modal_projector,
        image_newline=getattr(inner, "image_newline", None),
        llm=model,
        device=device,
        compute_dtype=dtype,
        loaded=LoadedModel(str(dtype).removeprefix("torch."), quantization),
    )


def native_facts(config: Any, image_processor: Any, l_final: int | None = None) -> NativeFacts:
    """Facts of a Qwen-VL config and its image processor; l_final defaults to the signal block."""
    vision = config.vision_config
    block = signal_block(vision) if l_final is None else l_final
    if not 0 <= block < int(vision.depth):
        raise ModelLoadError(expected("l_final", f"a block index in 0..{vision.depth - 1}", block))
    size = image_processor.size
    return NativeFacts(
        config.model_type,
        0,
        int(vision.patch_size),
        int(vision.num_heads),
        (),
        LayerPlan(int(vision.depth), block, block),
        int(config.image_token_id),
        "received",
        merge=int(vision.spatial_merge_size),
        min_pixels=int(size["shortest_edge"]),
        max_pixels=int(size["longest_edge"]),
    )


#: Qwen3.5's Gated-DeltaNet gate projections (hidden -> one value per head), never quantized:
#: they hold ~0.1% of the weights, and on CPUs with AVX512-BF16 bitsandbytes repacks a 4-bit
#: layer at its first forward, which needs out_features divisible by 32 (a head count is not:
#: "N must be divisible by block_n"). Suffixes, as bitsandbytes' skip list matches them.
LINEAR_ATTENTION_GATES = ("linear_attn.in_proj_a", "linear_attn.in_proj_b")
#: What bitsandbytes leaves alone in a Qwen-VL model quantized at load: the whole tower (HiRED
#: reads its q / k; its mergers, DeepStack's included, live under it), `lm_head` and the gates.
NATIVE_KEEP_UNQUANTIZED = ["model.visual", "lm_head", *LINEAR_ATTENTION_GATES]


def load_native_parts(
    config: Any,
    model_id: str,
    device: torch.device,
    dtype: torch.dtype,
    l_final: int | None,
    quantization: str = "none",
) -> VlmParts:
    """A Qwen-VL checkpoint: the stock model, its PIL image processor, tokenizer and template.

    "8bit" / "4bit" quantize the text decoder's Linear layers as they load (bitsandbytes); the
    tower and lm_head stay in `dtype`. The video processor a checkpoint may declare is never
    loaded (it needs torchvision).
    """
    import transformers

    source = resolve_source(model_id)
    processor = load_image_text_processor(source)
    facts = native_facts(config, processor.image_processor, l_final)
    model_class = getattr(transformers, NATIVE_FAMILIES[facts.family])
    kwargs = load_kwargs(device, dtype, quantization, NATIVE_KEEP_UNQUANTIZED)
    model = model_class.from_pretrained(source, **kwargs).eval()
    return VlmParts(
        facts=facts,
        processor=processor,
        encoder=QwenVisionEncoder(model, facts.layers.l_final),
        projector=model.model.visual.merger,
        image_newline=None,
        llm=model,
        device=device,
        compute_dtype=dtype,
        loaded=LoadedModel(str(dtype).removeprefix("torch."), quantization),
    )


def load_tiled_parts(
    config: Any,
    model_id: str,
    device: torch.device,
    dtype: torch.dtype,
    l_init: int = 0,
    l_final: int | None = None,
    quantization: str = "none",
) -> VlmParts:
    """`load_parts` for InternVL3/3.5 and SmolVLM2 / Idefics3 (tiles plus a global view)."""
    source = resolve_source(model_id)
    processor = load_tiled_processor(source, config.model_type)
    facts = tiled_facts(config, processor.image_processor, l_init, l_final)
    keep = TILED_KEEP_UNQUANTIZED[facts.tile_family]
    kwargs = load_kwargs(device, dtype, quantization, keep)
    model = FAMILIES[config.model_type].from_pretrained(source, **kwargs).eval()
    encoder, projector = tiled_modules(model, facts)
    loaded = LoadedModel(str(dtype).removeprefix("torch."), quantization)
    return VlmParts(facts, processor, encoder, projector, None, model, device, dtype, loaded)
