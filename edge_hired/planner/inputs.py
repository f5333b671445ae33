"""What the planner is given: a model's facts (`PlanInputs`) and one request's (`PlanRequest`).

`PlanInputs` comes from a bundle manifest (facts the exporter recorded) or from a transformers
config alone, with weights counted on the meta device; torch and transformers are imported only
inside that function, so planning from a manifest needs neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_hired.planner.shapes import (
    PLAN_MAX_PIXELS,
    LlmShape,
    VisionShape,
    llm_matmul_params,
    max_geometry,
    vision_matmul_params,
)
from edge_hired.units import MIB, normal_dtype

if TYPE_CHECKING:
    from edge_hired.bundle.manifest import Manifest, VisionSpec

#: ONNX Runtime in a bundle run, measured: `import onnxruntime` 18 MiB + an InferenceSession 10.
ONNX_RUNTIME_BYTES = 28 * MIB


@dataclass(frozen=True)
class PlanInputs:
    """Model facts for planning: from a bundle manifest or from a config alone."""

    source: str
    llm: LlmShape
    vision: VisionShape
    quantization: str
    compute_dtype: str
    kv_dtype: str
    llm_weight_bytes: int
    encoder_weight_bytes: int
    llm_matmul_params: int  # for the FLOP estimate
    vision_matmul_params: int
    largest_quantized_linear: int = 0  # params; dequantised to compute dtype one at a time
    measured_encoder_bytes_per_partition: int | None = None
    notes: tuple[str, ...] = ()
    vision_dtype: str = "float32"  # dtype of the encoder's activations
    onnx_runtime_bytes: int = 0  # host memory of ONNX Runtime when the encoder runs in it

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes each token adds."""
        return self.llm.kv_bytes_per_token(self.kv_dtype)

    def with_kv_dtype(self, kv_dtype: str | None) -> PlanInputs:
        """The same facts with the KV cache in another dtype (None keeps it)."""
        return self if kv_dtype is None else replace(self, kv_dtype=normal_dtype(kv_dtype))

    def max_geometry(self) -> tuple[int, int]:
        """(partitions, visual tokens) of the model's largest image layout."""
        return max_geometry(self.vision)

    @classmethod
    def from_manifest(cls, manifest: Manifest, kv_dtype: str | None = None) -> PlanInputs:
        """Facts recorded by the exporter; shapes it does not record are assumed (see notes)."""
        return _inputs_from_manifest(manifest, kv_dtype)


@dataclass(frozen=True)
class PlanRequest:
    """What one request adds: tokens around the image, and the image itself."""

    prompt_tokens: int = 64
    max_new_tokens: int = 64
    extra_tokens: int = 0  # fixed extra LLM positions, e.g. image_newline tokens
    partitions: int | None = None  # None: the model's largest layout
    visual_tokens: int | None = None  # valid visual tokens of the image; None: the largest
    image_hw: tuple[int, int] | None = None  # None: DEFAULT_IMAGE_HW
    allocator: str | None = None  # "cpu" or "cuda"; None: the profile's device
    first_request: bool = False  # the process's first (cold) request, as `run` makes it
    #: The encoder runs in ONNX Runtime on a GPU provider (CUDA, TensorRT): its arena is held
    #: for the session, so it adds to the LLM's phase (`planner.costs.arena_line`).
    encoder_held: bool = False
    #: `--compile`: decode on a static KV cache sized at a bucket (`planner.buckets`) instead of
    #: a growing one (`planner.costs.static_kv_lines`).
    static_kv_cache: bool = False


def _inputs_from_manifest(manifest: Manifest, kv_dtype: str | None) -> PlanInputs:
    """PlanInputs from a bundle manifest (weights in bytes as exported)."""
    llm_spec, vision_spec = manifest.llm, manifest.vision
    llm = LlmShape(
        llm_spec.num_layers,
        llm_spec.hidden_size,
        llm_spec.intermediate_size,
        llm_spec.hidden_size // llm_spec.head_dim,
        llm_spec.num_kv_heads,
        llm_spec.head_dim,
        llm_spec.vocab_size,
        llm_spec.linear_state_bytes,
    )
    vision = VisionShape(
        vision_spec.layers_in_graph,
        vision_spec.hidden_size,
        vision_spec.intermediate_size or 4 * vision_spec.hidden_size,
        vision_spec.num_heads,
        vision_spec.crop_size,
        vision_spec.patch_size,
        vision_spec.family,
        tuple((int(h), int(w)) for h, w in vision_spec.pinpoints),
        has_cls=vision_spec.signal == "cls",
        max_tiles=vision_spec.max_tiles,
        tile_merge=vision_spec.tile_merge,
        min_tiles=vision_spec.min_tiles,
        longest_edge=vision_spec.longest_edge,
    )
    vision = replace(vision, **_native_fields(vision_spec))
    quantized = llm_spec.quantization != "none"
    compute = normal_dtype(llm_spec.compute_dtype)
    return PlanInputs(
        source=f"bundle {manifest.source.get('model_id', '?')}",
        llm=llm,
        vision=vision,
        quantization=llm_spec.quantization,
        compute_dtype=compute,
        kv_dtype=normal_dtype(kv_dtype or compute),
        vision_dtype=normal_dtype(vision_spec.dtype),
        llm_weight_bytes=llm_spec.weight_bytes,
        encoder_weight_bytes=vision_spec.encoder_bytes + llm_spec.projector_bytes,
        llm_matmul_params=llm_matmul_params(
            replace(llm, num_layers=llm_spec.decoder_layers or llm.num_layers)
        ),
        vision_matmul_params=vision_matmul_params(vision),
        largest_quantized_linear=llm.hidden_size * max(llm.intermediate_size, llm.hidden_size)
        if quantized
        else 0,
        measured_encoder_bytes_per_partition=vision_spec.activation_bytes_per_partition or None,
        notes=(_bundle_note(vision_spec),),
        onnx_runtime_bytes=ONNX_RUNTIME_BYTES,
    )


def parameter_bytes(shape: tuple[int, ...], quantization: str, size: int) -> int:
    """Stored bytes of one parameter: plain, bitsandbytes NF4 (blocks of 64) or LLM.int8."""
    numel = math.prod(shape)
    if quantization == "4bit":
        return math.ceil(numel / 2) + math.ceil(numel / 64) * 4
    if quantization == "8bit":
        return numel + shape[0] * 4
    return numel * size


def _native_fields(vision_spec: VisionSpec) -> dict[str, int]:
    """A native-resolution bundle's merge and pixel limits (the largest image planned for is
    capped as a checkpoint's plan caps it: `PLAN_MAX_PIXELS`), and its graph's attention query
    chunks (an older bundle's graph holds whole maps: one chunk) and windows."""
    if not vision_spec.spatial_merge:
        return {}
    largest = min(vision_spec.max_pixels, PLAN_MAX_PIXELS)
    return {
        "crop_size": math.isqrt(largest),  # pixel values: about `largest` per channel
        "merge": vision_spec.spatial_merge,
        "min_pixels": min(vision_spec.min_pixels, largest),
        "max_pixels": largest,
        "attention_query_chunks": vision_spec.attention_query_chunks or 1,
        "window_size": vision_spec.window_size,
    }


def _bundle_note(vision_spec: VisionSpec) -> str:
    """What a plan from a manifest assumes about the shapes it does not record."""
    mlp = "" if vision_spec.intermediate_size else "vision MLP assumed 4 x hidden (CLIP), "
    return f"bundle: {mlp}attention heads hidden / head dim"
