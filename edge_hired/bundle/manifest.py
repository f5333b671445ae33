"""The bundle manifest: every fact the device-side runtime and the memory planner need.

Written beside the exported files so that nothing is inferred from file names. It is plain JSON
(never pickle), versioned by `SCHEMA_VERSION`; a reader refuses versions it does not know.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_hired.errors import EdgeHiredError, expected

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class BundleError(EdgeHiredError):
    """A directory that is not a usable bundle: missing, tampered, or of an unknown schema."""


@dataclass(frozen=True)
class FileRecord:
    """Size and sha256 of one bundle file."""

    bytes: int
    sha256: str


@dataclass(frozen=True)
class VisionSpec:
    """The exported vision encoder and the image geometry it serves."""

    family: str  # "llava_next" or "llava"
    crop_size: int  # pixels per partition side (336)
    patch_size: int  # ViT patch (14)
    tokens_per_partition: int  # N (576)
    num_heads: int
    hidden_size: int
    vision_feature_layer: int  # LLaVA's hidden-state index (-2)
    layers_in_graph: int  # encoder layers in the ONNX graph (23 of 24)
    l_init: int
    l_final: int
    pinpoints: list[list[int]]
    image_token_id: int
    encoder_bytes: int  # ONNX weights
    activation_bytes_per_partition: int  # measured peak above weights, per partition, at export
    dtype: str  # "float32" or "float16"


@dataclass(frozen=True)
class LlmSpec:
    """The language model's geometry and storage, for loading and for memory planning."""

    architecture: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    compute_dtype: str  # "float32", "float16" or "bfloat16"
    quantization: str  # "none", "8bit" or "4bit"
    weight_bytes: int  # bytes of the saved weights
    projector_bytes: int


@dataclass(frozen=True)
class Manifest:
    """Everything a bundle declares about itself."""

    schema_version: int
    source: dict[str, Any]  # model_id, revision
    versions: dict[str, str]  # edge-hired, torch, transformers, onnx, bitsandbytes
    vision: VisionSpec
    llm: LlmSpec
    parity: dict[str, dict[str, float]]  # output -> {max_abs_diff, tolerance}
    files: dict[str, FileRecord] = field(default_factory=dict)
    export_seconds: float = 0.0

    def to_json(self) -> str:
        """Pretty JSON, keys in declaration order."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "manifest") -> Manifest:
        """Parse and check a manifest dictionary; unknown schema versions are refused."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(expected(f"{origin}: schema_version", SCHEMA_VERSION, version))
        try:
            return cls(
                **{
                    **_plain(cls, data, origin),
                    "vision": VisionSpec(**_plain(VisionSpec, data["vision"], origin + ".vision")),
                    "llm": LlmSpec(**_plain(LlmSpec, data["llm"], origin + ".llm")),
                    "files": {k: FileRecord(**v) for k, v in data.get("files", {}).items()},
                }
            )
        except (KeyError, TypeError) as error:
            raise BundleError(f"{origin}: malformed manifest ({error})") from error


def _plain(kind: type, data: Any, origin: str) -> dict[str, Any]:
    """The fields of `kind` from data, refusing missing or unknown keys by name."""
    if not isinstance(data, dict):
        raise BundleError(expected(origin, "a JSON object", type(data).__name__))
    names = {f.name for f in fields(kind)}
    required = {
        f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING
    }
    unknown, missing = set(data) - names, required - set(data)
    if unknown:
        raise BundleError(f"{origin}: unknown field(s) {sorted(unknown)}")
    if missing:
        raise BundleError(f"{origin}: missing field(s) {sorted(missing)}")
    return dict(data)


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
