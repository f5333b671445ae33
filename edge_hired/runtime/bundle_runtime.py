"""Run from an exported bundle alone: ONNX Runtime encoder, safetensors projector, saved LLM.

The bundle's manifest is the only source of facts; every file's sha256 is checked at load
unless the caller opts out. The result is a `Pipeline`, the same one `run --model` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoProcessor
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
from transformers.models.llava_next.modeling_llava_next import LlavaNextMultiModalProjector

from edge_hired.bundle.hashing import verify_files
from edge_hired.bundle.layout import (
    ENCODER_FILE,
    LLM_DIR,
    PROCESSOR_DIR,
    PROJECTOR_FILE,
    VLM_CONFIG_DIR,
)
from edge_hired.bundle.manifest import Manifest, read_manifest
from edge_hired.device.providers import choose_providers
from edge_hired.device.torch_device import choose_torch_device
from edge_hired.runtime.loading import ModelFacts, VlmParts
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.vision import LayerPlan, VisionOutput
from edge_hired.units import SHORT_DTYPES

PROJECTORS = {"llava_next": LlavaNextMultiModalProjector, "llava": LlavaMultiModalProjector}
NUMPY_DTYPES = {"float16": np.float16, "float32": np.float32}


class OnnxVisionEncoder:
    """The exported encoder graph behind the same call as the in-process encoder."""

    def __init__(self, path: Path, providers: tuple[str, ...], input_dtype: str) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=list(providers))
        self.input_dtype = NUMPY_DTYPES[input_dtype]

    def __call__(self, pixel_values: torch.Tensor) -> VisionOutput:
        """[P, 3, H, W] pixels -> features, CLS rows, keys (torch tensors on the CPU)."""
        pixels = pixel_values.detach().cpu().numpy().astype(self.input_dtype)
        features, init, final, keys = self.session.run(None, {"pixel_values": pixels})
        as_torch = [
            torch.from_numpy(np.ascontiguousarray(a)) for a in (features, init, final, keys)
        ]
        return VisionOutput(*as_torch)


@dataclass(frozen=True)
class BundleLoadOptions:
    """How to load a bundle on this device."""

    verify: bool = True
    providers: tuple[str, ...] | None = None
    device: str = "auto"


def facts_from_manifest(manifest: Manifest) -> ModelFacts:
    """The pipeline's geometry facts, straight from the manifest."""
    vision = manifest.vision
    plan = LayerPlan(vision.layers_in_graph, vision.l_init, vision.l_final)
    pins = tuple(tuple(int(v) for v in p) for p in vision.pinpoints)
    return ModelFacts(
        vision.family,
        vision.crop_size,
        vision.patch_size,
        vision.num_heads,
        pins,
        plan,
        vision.image_token_id,
    )


def load_projector(bundle: Path, family: str, dtype: torch.dtype, device: torch.device):
    """Projector module and image_newline from safetensors (never pickle)."""
    config = AutoConfig.from_pretrained(bundle / VLM_CONFIG_DIR)
    projector = PROJECTORS[family](config)
    tensors = load_file(str(bundle / PROJECTOR_FILE))
    weights = {
        k.removeprefix("projector."): v for k, v in tensors.items() if k.startswith("projector.")
    }
    projector.load_state_dict(weights, strict=True)
    projector = projector.to(device=device, dtype=dtype).eval()
    newline = tensors.get("image_newline")
    return projector, None if newline is None else newline.to(device=device, dtype=dtype)


def load_bundle_pipeline(
    bundle: str | Path, options: BundleLoadOptions = BundleLoadOptions()
) -> Pipeline:
    """A ready `Pipeline` from a bundle directory."""
    from edge_hired.runtime.language_model import load_language_model

    root = Path(bundle).expanduser()
    manifest = read_manifest(root)
    verify_files(root, manifest.files, check_hashes=options.verify)
    providers = choose_providers(list(options.providers) if options.providers else None)
    device = choose_torch_device(options.device, SHORT_DTYPES[manifest.llm.compute_dtype])
    llm = load_language_model(root / LLM_DIR, device.device, device.dtype)
    projector, newline = load_projector(root, manifest.vision.family, device.dtype, device.device)
    parts = VlmParts(
        facts=facts_from_manifest(manifest),
        processor=AutoProcessor.from_pretrained(root / PROCESSOR_DIR),
        encoder=OnnxVisionEncoder(root / ENCODER_FILE, providers.providers, manifest.vision.dtype),
        projector=lambda x: projector(x.to(device=device.device, dtype=device.dtype)),
        image_newline=newline,
        llm=llm,
        device=device.device,
    )
    reason = f"encoder {providers.reason}; LLM {device.reason}, {manifest.llm.quantization}"
    return Pipeline(parts, reason)
