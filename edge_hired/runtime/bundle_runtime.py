"""Run from an exported bundle alone: ONNX Runtime encoder, safetensors projector, saved LLM.

The bundle's manifest is the only source of facts; every file's sha256 is checked at load
unless the caller opts out. The result is a `Pipeline`, the same one `run --model` uses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoConfig
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
from transformers.models.llava_next.modeling_llava_next import LlavaNextMultiModalProjector
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionMultiModalProjector,
)

from edge_hired.bundle.hashing import verify_files
from edge_hired.bundle.layout import (
    ENCODER_FILE,
    LLM_DIR,
    PROCESSOR_DIR,
    PROJECTOR_FILE,
    VLM_CONFIG_DIR,
)
from edge_hired.bundle.manifest import Manifest, read_manifest
from edge_hired.device import tensorrt
from edge_hired.device.ort_providers import import_onnxruntime
from edge_hired.device.providers import ProviderChoice, choose_providers
from edge_hired.runtime.loading import LoadedModel, ModelFacts, VlmParts
from edge_hired.runtime.native_bundle import (
    is_native_family,
    load_native_bundle,
    native_facts_from_manifest,
    without_tensorrt,
)
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.processors import load_processor
from edge_hired.runtime.tiled_bundle import (
    PartitionOrderEncoder,
    is_tiled_family,
    tiled_facts_from_manifest,
    tiled_projector,
)
from edge_hired.runtime.tiled_facts import TiledFacts
from edge_hired.runtime.vision import LayerPlan, VisionOutput

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target

PROJECTORS = {
    "llava_next": LlavaNextMultiModalProjector,
    "llava": LlavaMultiModalProjector,
    "llava_onevision": LlavaOnevisionMultiModalProjector,
}
NUMPY_DTYPES = {"float16": np.float16, "float32": np.float32}


ProviderEntry = str | tuple[str, dict[str, str]]


class OnnxVisionEncoder:
    """The exported encoder graph behind the same call as the in-process encoder."""

    def __init__(
        self,
        path: Path,
        providers: Sequence[ProviderEntry],
        input_dtype: str,
        ort: Any = None,
        signal: str = "cls",
    ) -> None:
        ort = ort if ort is not None else import_onnxruntime()
        self.session = ort.InferenceSession(str(path), providers=list(providers))
        self.input_dtype = NUMPY_DTYPES[input_dtype]
        self.signal = signal

    @property
    def provider(self) -> str:
        """The execution provider ONNX Runtime really registered first for this session."""
        return self.session.get_providers()[0]

    def __call__(self, pixel_values: torch.Tensor) -> VisionOutput:
        """[P, 3, H, W] host pixels -> features, signal rows, keys (torch tensors on the CPU)."""
        pixels = pixel_values.detach().cpu().numpy().astype(self.input_dtype)
        features, init, final, keys = self.session.run(None, {"pixel_values": pixels})
        as_torch = [
            torch.from_numpy(np.ascontiguousarray(a)) for a in (features, init, final, keys)
        ]
        return VisionOutput(*as_torch, signal=self.signal)


@dataclass(frozen=True)
class BundleLoadOptions:
    """How to load a bundle on this device (a library call's flags; the CLI passes a target)."""

    verify: bool = True
    providers: tuple[str, ...] | None = None
    device: str = "auto"
    dtype: str | None = None  # "fp32" / "fp16" / "bf16"; None: decided for the device
    cache_root: Path | None = None  # TensorRT engine cache root; None: edge-hired's cache
    notify: Callable[[str], None] | None = None  # progress lines; None: stderr


def facts_from_manifest(manifest: Manifest) -> ModelFacts | TiledFacts:
    """The pipeline's geometry facts, straight from the manifest."""
    vision = manifest.vision
    if is_native_family(vision.family):
        return native_facts_from_manifest(vision)
    if is_tiled_family(vision.family):
        return tiled_facts_from_manifest(vision)
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
        vision.signal,
        vision.max_tiles,
    )


def load_projector(bundle: Path, family: str, dtype: torch.dtype, device: torch.device):
    """Projector module and image_newline from safetensors (never pickle)."""
    config = AutoConfig.from_pretrained(bundle / VLM_CONFIG_DIR)
    projector = (
        PROJECTORS[family](config) if family in PROJECTORS else tiled_projector(family, config)
    )
    tensors = load_file(str(bundle / PROJECTOR_FILE))
    weights = {
        k.removeprefix("projector."): v for k, v in tensors.items() if k.startswith("projector.")
    }
    projector.load_state_dict(weights, strict=True)
    projector = projector.to(device=device, dtype=dtype).eval()
    newline = tensors.get("image_newline")
    return projector, None if newline is None else newline.to(device=device, dtype=dtype)


def load_bundle_pipeline(
    bundle: str | Path,
    options: BundleLoadOptions = BundleLoadOptions(),
    target: Target | None = None,
) -> Pipeline:
    """A ready `Pipeline` from a bundle directory, loaded as `target` says.

    Without a target one is resolved here from `options` (device, dtype, providers, verify).
    """
    from edge_hired.runtime.language_model import load_language_model, parameter_bytes

    root = Path(bundle).expanduser()
    target = target or _target_of(root, options)
    manifest = read_manifest(root)
    verify_files(root, manifest.files, check_hashes=target.verify)
    providers = choose_providers(list(target.providers) if target.providers else None)
    if is_native_family(manifest.vision.family):
        providers = without_tensorrt(providers)
        entries = session_providers(providers, manifest, options)
        return load_native_bundle(root, manifest, target, entries, providers.reason)
    device, dtype = target.device, target.torch_dtype
    llm = load_language_model(root / LLM_DIR, device, dtype)
    projector, newline = load_projector(root, manifest.vision.family, dtype, device)
    entries = session_providers(providers, manifest, options)
    loaded = LoadedModel(
        target.compute_dtype,
        manifest.llm.quantization,
        llm_weight_bytes=parameter_bytes(llm),
        projector_bytes=parameter_bytes(projector),
    )
    parts = VlmParts(
        facts=facts_from_manifest(manifest),
        processor=load_processor(root / PROCESSOR_DIR, manifest.vision.family),
        encoder=_in_partition_order(
            OnnxVisionEncoder(
                root / ENCODER_FILE, entries, manifest.vision.dtype, signal=manifest.vision.signal
            ),
            manifest.vision.family,
        ),
        projector=lambda x: projector(x.to(device=device, dtype=dtype)),
        image_newline=newline,
        llm=llm,
        device=device,
        compute_dtype=dtype,
        loaded=loaded,
    )
    return Pipeline(parts, f"encoder {providers.reason}; LLM {target.reason}")


def _in_partition_order(encoder: OnnxVisionEncoder, family: str) -> Any:
    """Tiled families' graphs emit the stock image order: hand it on global view first."""
    return PartitionOrderEncoder(encoder) if is_tiled_family(family) else encoder


def _target_of(root: Path, options: BundleLoadOptions) -> Target:
    """The target of a library call that gave only `BundleLoadOptions`."""
    from edge_hired.runtime.target import ModelSource, TargetFlags, resolve_target

    flags = TargetFlags(
        options.device, options.dtype, providers=options.providers, verify=options.verify
    )
    return resolve_target(flags, ModelSource("bundle", str(root)))


def session_providers(
    choice: ProviderChoice, manifest: Manifest, options: BundleLoadOptions
) -> list[ProviderEntry]:
    """The providers as ONNX Runtime takes them: TensorRT with its cache and profile options,
    CUDA with its arena held to the planner's figure (`planner.costs.ort_gpu_mem_limit`)."""
    from edge_hired.device.providers import session_entries
    from edge_hired.planner.costs import ort_gpu_mem_limit
    from edge_hired.planner.inputs import PlanInputs

    cuda = "CUDAExecutionProvider" in choice.providers
    limit = ort_gpu_mem_limit(PlanInputs.from_manifest(manifest)) if cuda else None
    if choice.providers[0] != "TensorrtExecutionProvider":
        return session_entries(choice.providers, limit)
    from edge_hired.models.tiny import cache_root

    vision = manifest.vision
    identity = tensorrt.EngineIdentity(
        encoder_sha256=_encoder_sha256(manifest),
        ort_version=import_onnxruntime().__version__,
        trt_version=tensorrt.tensorrt_version(),
        gpu=tensorrt.gpu_name(),
    )
    directory = tensorrt.cache_dir(options.cache_root or cache_root(), identity)
    directory.mkdir(parents=True, exist_ok=True)
    if tensorrt.is_cold(directory):
        (options.notify or _to_stderr)(tensorrt.COLD_CACHE_MESSAGE)
    trt_options = tensorrt.provider_options(
        directory,
        fp16=vision.dtype == "float16",
        partitions=_max_partitions(manifest),
        crop_size=vision.crop_size,
    )
    return session_entries(choice.providers, limit, trt_options)


def _max_partitions(manifest: Manifest) -> int:
    """Partitions of the model's largest image (the TensorRT profile's batch bound)."""
    vision = manifest.vision
    if is_tiled_family(vision.family):  # tiles + a global view, from the recorded tiling
        from edge_hired.planner.inputs import PlanInputs

        return PlanInputs.from_manifest(manifest).max_geometry()[0]
    return tensorrt.max_partitions(vision.pinpoints, vision.crop_size)


def _encoder_sha256(manifest: Manifest) -> str:
    """The encoder's identity: sha256 of its graph (and of its external data, if any)."""
    stem = Path(ENCODER_FILE).stem
    digests = [r.sha256 for name, r in sorted(manifest.files.items()) if name.startswith(stem)]
    return "+".join(digests)


def _to_stderr(line: str) -> None:
    print(f"[edge-hired] {line}", file=sys.stderr, flush=True)
