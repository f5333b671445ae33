"""The pydantic schemas of the bundle manifest and the export recipes (`edge_hired.schema`).

Each bad file must fail with one line that names the file and the key, and the parsed data is
frozen. The profile and evaluation-row schemas are tested in test_profiles / test_eval_dataset.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_hired.bundle.manifest import MANIFEST_NAME, BundleError, Manifest, read_manifest
from edge_hired.errors import EdgeHiredError
from edge_hired.export.recipes import RECIPES_ENV, RecipeError, load_recipe, recipes_dir

VISION = {
    "family": "llava_next",
    "crop_size": 336,
    "patch_size": 14,
    "tokens_per_partition": 576,
    "num_heads": 16,
    "hidden_size": 1024,
    "vision_feature_layer": -2,
    "layers_in_graph": 23,
    "l_init": 0,
    "l_final": 22,
    "pinpoints": [[336, 672], [672, 336]],
    "image_token_id": 32000,
    "encoder_bytes": 600,
    "activation_bytes_per_partition": 30,
    "dtype": "float16",
    "signal": "cls",
    "max_tiles": 0,
    "tile_merge": 1,
    "min_tiles": 1,
    "longest_edge": 0,
    "spatial_merge": 0,
    "min_pixels": 0,
    "max_pixels": 0,
    "position_grid_side": 0,
    "window_size": 0,
    "deepstack_outputs": 0,
    "intermediate_size": 0,
    "attention_query_chunks": 0,
}
LLM = {
    "architecture": "LlamaForCausalLM",
    "num_layers": 32,
    "num_kv_heads": 32,
    "head_dim": 128,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
    "compute_dtype": "float16",
    "quantization": "4bit",
    "weight_bytes": 3900,
    "projector_bytes": 40,
    "decoder_layers": 0,
    "linear_state_bytes": 0,
}
GOOD: dict[str, Any] = {
    "schema_version": 1,
    "source": {"model_id": "llava-7b", "revision": None},
    "versions": {"torch": "2.13.0"},
    "vision": VISION,
    "llm": LLM,
    "parity": {"features": {"max_abs_diff": 1e-5, "tolerance": 1e-4}},
    "files": {"llm/model.safetensors": {"bytes": 3900, "sha256": "ab" * 32}},
    "export_seconds": 12.5,
}
VISION_KEYS = ", ".join(VISION)


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the key at `path` ("vision/crop_size") set to `value`, or removed if `...`."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split("/")
    target = data
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


def write_manifest(folder: Path, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    return folder / MANIFEST_NAME


# --- the manifest -----------------------------------------------------------------------------


def test_a_good_manifest_reads_back_to_the_same_object(tmp_path) -> None:
    manifest = Manifest.from_dict(GOOD)
    assert manifest.llm.compute_dtype == "float16" and manifest.vision.pinpoints[1] == [672, 336]
    assert manifest.files["llm/model.safetensors"].bytes == 3900
    (tmp_path / MANIFEST_NAME).write_text(manifest.to_json())
    assert read_manifest(tmp_path) == manifest
    assert json.loads(manifest.to_json()) == GOOD


def test_a_manifest_from_before_the_signal_field_reads_as_cls() -> None:
    older = changed("vision/signal", ...)
    del older["vision"]["max_tiles"]
    vision = Manifest.from_dict(older).vision
    assert (vision.signal, vision.max_tiles) == ("cls", 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            changed("vision/extra", 1),
            f"{{path}}: unknown key 'vision.extra' (known: {VISION_KEYS})",
        ),
        (
            changed("vision/crop_size", "336"),
            "{path}: vision.crop_size: expected a valid integer, got '336'",
        ),
        (
            changed("vision/crop_size", 336.0),
            "{path}: vision.crop_size: expected a valid integer, got 336.0",
        ),
        (changed("llm/vocab_size", ...), "{path}: missing key 'llm.vocab_size'"),
        (
            changed("llm", [1]),
            "{path}: llm: expected a dictionary or an instance of LlmSpec, got [1]",
        ),
        (
            changed("versions/onnx", None),
            "{path}: versions.onnx: expected a valid string, got None",
        ),
        (
            changed("parity/features/tolerance", "1e-4"),
            "{path}: parity.features.tolerance: expected a valid number, got '1e-4'",
        ),
        (changed("schema_version", 2), "{path}: schema_version: expected 1, got 2"),
        ([GOOD], "{path}: schema_version: expected 1, got None"),
    ],
)
def test_bad_manifest_names_file_and_key(tmp_path, data: Any, message: str) -> None:
    path = write_manifest(tmp_path / "bundle", data)
    with pytest.raises(BundleError) as caught:
        read_manifest(path.parent)
    assert str(caught.value) == message.format(path=path)


def test_a_file_record_is_checked_inside_its_entry(tmp_path) -> None:
    data = changed("files", {"a.onnx": {"bytes": 1, "sha256": "ab" * 32, "mtime": 0}})
    path = write_manifest(tmp_path, data)
    with pytest.raises(BundleError) as caught:
        read_manifest(tmp_path)
    assert str(caught.value) == (
        f"{path}: unknown key 'files.a.onnx.mtime'"  # inside a dict: no list of known keys
    )


def test_an_unknown_version_is_refused_before_the_schema_is_read() -> None:
    """A newer exporter may add keys: the version is what the user must be told about."""
    newer = changed("schema_version", 2)
    newer["vision"] = {"something": "else"}
    with pytest.raises(BundleError, match=r"^manifest: schema_version: expected 1, got 2$"):
        Manifest.from_dict(newer)


def test_a_manifest_is_frozen_and_a_changed_copy_is_checked_again() -> None:
    manifest = Manifest.from_dict(GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.llm.compute_dtype = "float32"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.export_seconds = 0.0  # type: ignore[misc]
    later = dataclasses.replace(manifest, export_seconds=3.25)
    assert later.export_seconds == 3.25 and later.llm == manifest.llm
    with pytest.raises(ValidationError, match="weight_bytes"):
        dataclasses.replace(manifest.llm, weight_bytes="3.9 GB")


# --- the export recipes -----------------------------------------------------------------------

RECIPE_KEYS = (
    "family, model_class, vision_tower, projector, image_newline, default_opset, "
    "probe_partitions, tolerance"
)


@pytest.fixture
def recipe_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped recipes, read instead of them."""
    folder = tmp_path / "recipes"
    shutil.copytree(recipes_dir(), folder)
    monkeypatch.setenv(RECIPES_ENV, str(folder))
    return folder / "llava.toml"


def test_shipped_recipes_load_with_their_tolerances() -> None:
    llava, next_ = load_recipe("llava"), load_recipe("llava_next")
    assert (llava.image_newline, next_.image_newline) == ("", "model.image_newline")
    assert (llava.probe_partitions, next_.probe_partitions) == (2, 3)
    assert next_.tolerance_for("float32")["cls_attn_final"] == 1e-5
    assert next_.tolerance_for("float16")["features"] == 5e-2
    with pytest.raises(RecipeError, match=r"tolerance: expected \['float16', 'float32'\]"):
        next_.tolerance_for("bfloat16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        llava.default_opset = 17  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "default_opset = 18",
            "default_opset = 18\nopset = 17",
            f"{{path}}: unknown key 'opset' (known: {RECIPE_KEYS})",
        ),
        (
            "default_opset = 18",
            'default_opset = "18"',
            "{path}: default_opset: expected a valid integer, got '18'",
        ),
        (
            "probe_partitions = 2",
            "probe_partitions = 0",
            "{path}: probe_partitions: expected greater than or equal to 1, got 0",
        ),
        (
            "features = 5e-2",
            "features = -0.5",
            "{path}: tolerance.float16.features: expected greater than or equal to 0, got -0.5",
        ),
        (
            "features = 5e-2",
            "features = nan",
            "{path}: tolerance.float16.features: expected a finite number, got nan",
        ),
        ('family = "llava"\n', "", "{path}: missing key 'family'"),
        (
            'projector = "model.multi_modal_projector"',
            "projector = false",
            "{path}: projector: expected a valid string, got False",
        ),
    ],
)
def test_bad_recipe_names_file_and_key(recipe_copy: Path, old: str, new: str, message: str) -> None:
    text = recipe_copy.read_text()
    assert old in text
    recipe_copy.write_text(text.replace(old, new, 1))
    with pytest.raises(RecipeError) as caught:
        load_recipe("llava")
    assert str(caught.value) == message.format(path=recipe_copy)
    assert isinstance(caught.value, EdgeHiredError)  # the CLI prints it on one line, exit 2


def test_bad_recipe_toml_names_the_file(recipe_copy: Path) -> None:
    recipe_copy.write_text(recipe_copy.read_text().replace("default_opset = 18", "default_opset ="))
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(recipe_copy))}: malformed recipe"):
        load_recipe("llava")
