"""The bundle manifest: every fact the device-side runtime and the memory planner need.

Written beside the exported files so that nothing is inferred from file names. It is plain JSON
(never pickle), versioned by `SCHEMA_VERSION`; a reader refuses versions it does not know, and
checks every field against the schema below (pydantic; unknown or mistyped fields are refused).
"""

from __future__ import annotations

import json
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from pydantic import StrictFloat, StrictInt, StrictStr
from pydantic.dataclasses import dataclass

from edge_hired.errors import EdgeHiredError, expected
from edge_hired.schema import SCHEMA, validate

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class BundleError(EdgeHiredError):
    """A directory that is not a usable bundle: missing, tampered, or of an unknown schema."""


@dataclass(frozen=True, config=SCHEMA)
class FileRecord:
    """Size and sha256 of one bundle file."""

    bytes: StrictInt
    sha256: StrictStr


@dataclass(frozen=True, config=SCHEMA)
class VisionSpec:
    """The exported vision encoder and the image geometry it serves."""

    family: StrictStr  # the config's model_type: "llava_next", "internvl", "qwen3_vl", ...
    crop_size: StrictInt  # pixels per partition side (336)
    patch_size: StrictInt  # ViT patch (14)
    tokens_per_partition: StrictInt  # N (576)
    num_heads: StrictInt
    hidden_size: StrictInt
    vision_feature_layer: StrictInt  # LLaVA's hidden-state index (-2)
    layers_in_graph: StrictInt  # encoder layers in the ONNX graph (23 of 24)
    l_init: StrictInt
    l_final: StrictInt
    pinpoints: list[list[StrictInt]]
    image_token_id: StrictInt
    encoder_bytes: StrictInt  # ONNX weights
    # measured peak above the weights, per partition, at export
    activation_bytes_per_partition: StrictInt
    dtype: StrictStr  # "float32" or "float16"
    signal: StrictStr = "cls"  # HiRED's signal: "cls" (CLIP CLS rows) or "received" (SigLIP)
    max_tiles: StrictInt = 0  # OneVision's anyres_max_K (0: no downsampling); InternVL's max
    # Tiled families (InternVL, SmolVLM): tiles + a global view; tokens_per_partition counts
    # patches, one LLM token is a tile_merge x tile_merge block of them.
    tile_merge: StrictInt = 1  # pixel-shuffle block side (InternVL 2, SmolVLM 4 or 3)
    min_tiles: StrictInt = 1  # InternVL's min_patches
    longest_edge: StrictInt = 0  # SmolVLM's size.longest_edge
    # Native-resolution families (Qwen3-VL, Qwen2.5-VL, Qwen3.5): one image at its own size, a
    # spatial_merge x spatial_merge block of patches per LLM token; the grid-dependent encoder
    # inputs (rotary ids, position-embedding corners, windows) are rebuilt from these at run time.
    spatial_merge: StrictInt = 0  # 0: not a native-resolution family
    min_pixels: StrictInt = 0  # the image processor's smart_resize limits
    max_pixels: StrictInt = 0
    position_grid_side: StrictInt = 0  # Qwen3-VL / 3.5: side of the learned position grid
    window_size: StrictInt = 0  # Qwen2.5-VL: attention window in pixels (0: no windows)
    deepstack_outputs: StrictInt = 0  # Qwen3-VL: DeepStack feature outputs of the graph
    intermediate_size: StrictInt = 0  # the tower's MLP width; 0 (older bundles): 4 x hidden
    # Native families' ONNX graph: attention in this many query chunks, so one block holds
    # heads x ceil(N / chunks) x N scores; 0 (older bundles): whole [heads, N, N] maps.
    attention_query_chunks: StrictInt = 0


@dataclass(frozen=True, config=SCHEMA)
class LlmSpec:
    """The language model's geometry and storage, for loading and for memory planning."""

    architecture: StrictStr
    num_layers: StrictInt
    num_kv_heads: StrictInt
    head_dim: StrictInt
    hidden_size: StrictInt
    intermediate_size: StrictInt
    vocab_size: StrictInt
    max_position_embeddings: StrictInt
    compute_dtype: StrictStr  # "float32", "float16" or "bfloat16"
    quantization: StrictStr  # "none", "8bit" or "4bit"
    weight_bytes: StrictInt  # bytes of the saved weights
    projector_bytes: StrictInt
    # Hybrid decoders (Qwen3.5): num_layers counts the layers with a KV cache; decoder_layers all
    # of them (their weights run for every token), linear_state_bytes one sequence's fixed-size
    # linear-attention state (conv + recurrent). 0: every layer keeps keys and values.
    decoder_layers: StrictInt = 0
    linear_state_bytes: StrictInt = 0


@dataclass(frozen=True, config=SCHEMA)
class Manifest:
    """Everything a bundle declares about itself."""

    schema_version: StrictInt
    source: dict[str, Any]  # model_id, revision
    versions: dict[str, StrictStr]  # edge-hired, torch, transformers, onnx, bitsandbytes
    vision: VisionSpec
    llm: LlmSpec
    parity: dict[str, dict[str, StrictFloat]]  # output -> {max_abs_diff, tolerance}
    files: dict[str, FileRecord] = field(default_factory=dict)
    export_seconds: StrictFloat = 0.0

    def to_json(self) -> str:
        """Pretty JSON, keys in declaration order."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, origin: str = "manifest") -> Manifest:
        """Parse and check a manifest dictionary; unknown schema versions are refused."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise BundleError(expected(f"{origin}: schema_version", SCHEMA_VERSION, version))
        return validate(cls, data, origin, BundleError)


def read_manifest(bundle_dir: Path) -> Manifest:
    """Load `manifest.json` of a bundle directory, with errors naming the file."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"{bundle_dir}: expected a bundle directory, got no such directory")
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: expected a bundle with {MANIFEST_NAME}, got none")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: unreadable manifest ({error})") from error
    return Manifest.from_dict(data, origin=str(path))
