"""TensorRT execution-provider options for a bundle's encoder: one engine, built once, reused.

Without options ONNX Runtime's TensorRT provider rebuilds its engine at every start (minutes on
a Jetson) and builds one per input shape. So the options turn on the engine and timing caches
in a directory keyed by everything that invalidates an engine: the encoder's sha256, the ONNX
Runtime and TensorRT versions, and the GPU. `trt_fp16_enable` follows the bundle's encoder
dtype, and one optimization profile covers `pixel_values` from 1 partition to the most any
pinpoint grid gives (1 full image + rows x cols sub-images), so every grid shares the engine.
Option names from ONNX Runtime's TensorRT provider documentation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

COLD_CACHE_MESSAGE = "building TensorRT engine (first run only, can take minutes)"
INPUT_NAME = "pixel_values"
#: Distributions that carry TensorRT's Python bindings, newest naming first.
_TRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_libs")


@dataclass(frozen=True)
class EngineIdentity:
    """Everything a cached TensorRT engine depends on."""

    encoder_sha256: str
    ort_version: str
    trt_version: str
    gpu: str

    def key(self) -> str:
        """A short, filesystem-safe digest of the identity (the cache directory's name)."""
        text = "|".join((self.encoder_sha256, self.ort_version, self.trt_version, self.gpu))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def max_partitions(pinpoints: Iterable[Sequence[int]], crop_size: int) -> int:
    """Partitions of the largest grid: 1 (the full image) + rows x cols sub-images."""
    grids = [(int(h) // crop_size) * (int(w) // crop_size) for h, w in pinpoints]
    return 1 + max(grids, default=0)


def cache_dir(root: Path, identity: EngineIdentity) -> Path:
    """`<root>/tensorrt/<key>`: one directory per engine identity."""
    return Path(root) / "tensorrt" / identity.key()


def is_cold(directory: Path) -> bool:
    """No engine has been written to this cache directory yet."""
    return not any(Path(directory).glob("*.engine"))


def provider_options(
    directory: Path, fp16: bool, partitions: int, crop_size: int
) -> dict[str, str]:
    """Options for TensorrtExecutionProvider (ONNX Runtime takes them as strings)."""
    side = f"3x{crop_size}x{crop_size}"
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(directory),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(directory),
        "trt_fp16_enable": str(bool(fp16)),
        "trt_profile_min_shapes": f"{INPUT_NAME}:1x{side}",
        "trt_profile_opt_shapes": f"{INPUT_NAME}:{partitions}x{side}",
        "trt_profile_max_shapes": f"{INPUT_NAME}:{partitions}x{side}",
    }


def tensorrt_version() -> str:
    """TensorRT's version from its Python distribution, else from libnvinfer, else 'unknown'."""
    for name in _TRT_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    library = ctypes.util.find_library("nvinfer")
    if library is None:
        return "unknown"
    try:
        packed = int(ctypes.CDLL(library).getInferLibVersion())
    except (OSError, AttributeError):
        return "unknown"
    major, minor, patch = (packed // 1000, packed // 100 % 10, packed % 100)
    if packed >= 100000:  # TensorRT 10 packs major * 10000 + minor * 100 + patch
        major, minor, patch = packed // 10000, packed // 100 % 100, packed % 100
    return f"{major}.{minor}.{patch}"


def gpu_name(index: int = 0) -> str:
    """The CUDA device's name as torch reports it, or 'no-cuda'."""
    import torch

    if not torch.cuda.is_available():
        return "no-cuda"
    return torch.cuda.get_device_name(index)
