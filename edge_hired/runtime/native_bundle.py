"""A native-resolution family's bundle (Qwen3-VL, Qwen2.5-VL, Qwen3.5) loaded into a `Pipeline`.

The ONNX encoder takes one image of any size (`OnnxQwenEncoder` rebuilds the grid-dependent inputs
from the manifest's facts) and runs the merger itself; the language model is the bundle's text
model and lm_head inside the stock VLM class without its tower (`load_native_llm`), so prefill and
decode are the same stock M-RoPE / DeepStack forward the in-process path runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edge_hired.bundle.layout import ENCODER_FILE, LLM_DIR, PROCESSOR_DIR, VLM_CONFIG_DIR
from edge_hired.bundle.manifest import Manifest
from edge_hired.device.providers import ProviderChoice
from edge_hired.errors import ModelLoadError
from edge_hired.runtime.loading import NATIVE_FAMILIES, LoadedModel, NativeFacts, VlmParts
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.processors import load_image_text_processor
from edge_hired.runtime.qwen_bundle_llm import load_native_llm
from edge_hired.runtime.qwen_encoder_spec import QwenEncoderSpec
from edge_hired.runtime.qwen_onnx_encoder import OnnxQwenEncoder
from edge_hired.runtime.qwen_vision import NativeVisionOutput
from edge_hired.runtime.vision import LayerPlan

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target

TENSORRT = "TensorrtExecutionProvider"
MERGER_IN_ENCODER = "a Qwen-VL bundle's merger runs inside its ONNX encoder: no projector to call"


def is_native_family(family: str) -> bool:
    """Whether a manifest's family is a native-resolution one."""
    return family in NATIVE_FAMILIES


def native_facts_from_manifest(vision: Any) -> NativeFacts:
    """`NativeFacts` from a manifest's `VisionSpec`."""
    return NativeFacts(
        vision.family,
        0,
        vision.patch_size,
        vision.num_heads,
        (),
        LayerPlan(vision.layers_in_graph, vision.l_init, vision.l_final),
        vision.image_token_id,
        "received",
        merge=vision.spatial_merge,
        min_pixels=vision.min_pixels,
        max_pixels=vision.max_pixels,
    )


def encoder_spec(vision: Any) -> QwenEncoderSpec:
    """The ONNX encoder's spec, from a manifest's `VisionSpec` alone."""
    return QwenEncoderSpec(
        family=vision.family,
        patch_size=vision.patch_size,
        merge=vision.spatial_merge,
        grid_side=vision.position_grid_side,
        window_size=vision.window_size,
        num_deepstack=vision.deepstack_outputs,
        signal_block=vision.l_final,
        num_heads=vision.num_heads,
    )


def without_tensorrt(choice: ProviderChoice) -> ProviderChoice:
    """The providers minus TensorRT, which would build an engine for every new image size."""
    if TENSORRT not in choice.providers:
        return choice
    rest = tuple(name for name in choice.providers if name != TENSORRT)
    note = "TensorRT skipped: a native-resolution encoder changes shape with every image size"
    return replace(choice, providers=rest, reason=f"{choice.reason}; {note}")


def load_native_bundle(
    root: Path, manifest: Manifest, target: Target, entries: list[Any], reason: str
) -> Pipeline:
    """The pipeline of a native-resolution bundle whose files were already verified."""
    from edge_hired.runtime.language_model import parameter_bytes

    vision = manifest.vision
    device, dtype = target.device, target.torch_dtype
    quantized = manifest.llm.quantization != "none"
    llm = load_native_llm(
        root / LLM_DIR, root / VLM_CONFIG_DIR, device, None if quantized else dtype,
        manifest.llm.quantization,
    )  # fmt: skip
    compute = llm.get_input_embeddings().weight.dtype
    onnx = OnnxQwenEncoder(root / ENCODER_FILE, entries, vision.dtype, encoder_spec(vision))
    encoder = FeaturesFor(onnx, device, compute)
    parts = VlmParts(
        facts=native_facts_from_manifest(vision),
        processor=load_image_text_processor(root / PROCESSOR_DIR),
        encoder=encoder,
        projector=_merger_in_encoder,
        image_newline=None,
        llm=llm,
        device=device,
        compute_dtype=compute,
        loaded=LoadedModel(
            str(compute).removeprefix("torch."),
            manifest.llm.quantization,
            llm_weight_bytes=parameter_bytes(llm),
            projector_bytes=0,
        ),
    )
    return Pipeline(parts, f"encoder {reason}; LLM {target.reason}")


class FeaturesFor:
    """The ONNX encoder with its features handed over in the LLM's device and dtype (the host's
    float32 / float16 arrays become what the stock forward scatters into its embeddings)."""

    def __init__(self, encoder: OnnxQwenEncoder, device: torch.device, dtype: torch.dtype) -> None:
        self.encoder, self.device, self.dtype = encoder, device, dtype

    @property
    def provider(self) -> str:
        return self.encoder.provider

    def __call__(self, pixels: Any) -> NativeVisionOutput:
        out = self.encoder(pixels)
        move = lambda t: t.to(device=self.device, dtype=self.dtype)  # noqa: E731
        features = move(out.features)
        deepstack = tuple(move(layer) for layer in out.deepstack)
        return replace(out, features=features, keys_final=features, deepstack=deepstack)


def _merger_in_encoder(_features: torch.Tensor) -> torch.Tensor:
    """The projector slot of a native bundle: never called (the encoder emits merged features)."""
    raise ModelLoadError(MERGER_IN_ENCODER)
