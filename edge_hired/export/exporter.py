"""`edge-hired export`: a LLaVA checkpoint -> a self-describing bundle directory.

The bundle holds the ONNX vision encoder (features + the attention signal, named for it), the
projector and image_newline in safetensors, the language model alone (bitsandbytes 4/8-bit or
unquantized) saved with `save_pretrained`, the processor, and `manifest.json` with every fact,
hash and measured parity figure. Everything is written into a temporary sibling directory that
is renamed into place at the end, so an interrupted or failed export leaves no half bundle.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

import edge_hired
from edge_hired.bundle.hashing import file_records
from edge_hired.bundle.layout import (
    ENCODER_FILE,
    LLM_DIR,
    PROCESSOR_DIR,
    PROJECTOR_FILE,
    VLM_CONFIG_DIR,
)
from edge_hired.bundle.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    LlmSpec,
    Manifest,
    VisionSpec,
)
from edge_hired.device.torch_device import torch_dtype
from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.export.encoder_graph import EncoderGraph
from edge_hired.export.language_model import (
    extract_causal_lm,
    save_language_model,
    save_native_language_model,
)
from edge_hired.export.measure import activation_bytes_per_partition
from edge_hired.export.native_export import export_native_vision, native_spec_fields
from edge_hired.export.onnx_encoder import ParityFigure, check_parity, export_encoder
from edge_hired.export.recipes import Recipe, load_recipe
from edge_hired.export.tiled_encoder_graph import TiledEncoderGraph
from edge_hired.runtime.loading import (
    NATIVE_FAMILIES,
    ModelFacts,
    NativeFacts,
    model_facts,
    native_facts,
    read_config,
    resolve_source,
)
from edge_hired.runtime.processors import load_processor
from edge_hired.runtime.tiled_facts import TiledFacts, is_tiled, tiled_facts
from edge_hired.signals import sigterm_raises
from edge_hired.units import DTYPE_ALIASES, EXPORT_DTYPES, check_quantization

Progress = Callable[[str], None]
ExportFacts = ModelFacts | TiledFacts  # NativeFacts is a ModelFacts
EXPORT_STAGES = 6  # calls of `progress` per export, one as each stage begins


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how."""

    quantization: str = "4bit"
    dtype: str = "fp16"
    opset: int | None = None
    revision: str | None = None
    overwrite: bool = False
    measure_memory: bool = True


def check_options(options: ExportOptions) -> None:
    """Refuse unknown quantizations, dtypes and opsets before any work."""
    check_quantization(options.quantization)
    if options.dtype not in EXPORT_DTYPES:
        raise InvalidArgumentError(expected("dtype", "fp16 or fp32", options.dtype))
    if options.opset is not None and not 17 <= options.opset <= 23:
        raise InvalidArgumentError(expected("opset", "17..23", options.opset))


def export_bundle(
    model_id: str,
    out_dir: Path,
    options: ExportOptions = ExportOptions(),
    progress: Progress | None = None,
) -> Manifest:
    """Export `model_id` (hub id or directory) into the bundle directory `out_dir`."""
    check_options(options)
    out_dir = Path(out_dir)
    _check_target(out_dir, options.overwrite)
    if options.quantization != "none":
        from edge_hired.device.bitsandbytes_check import require_bitsandbytes

        require_bitsandbytes(options.quantization, torch.device("cpu"))
    say = progress or (lambda _stage: None)
    started = time.perf_counter()
    with _staging_dir(out_dir) as staging:
        manifest = _write_bundle(model_id, staging, options, say)
        manifest = replace(manifest, export_seconds=round(time.perf_counter() - started, 2))
        (staging / MANIFEST_NAME).write_text(manifest.to_json())
        _publish(staging, out_dir, options.overwrite)
    return manifest


def _write_bundle(model_id: str, staging: Path, options: ExportOptions, say: Progress) -> Manifest:
    """Every stage of the export, in order, into the staging directory."""
    say("load model")
    config = read_config(model_id, revision=options.revision)
    source = resolve_source(model_id)
    facts = _export_facts(config, source, options.revision)
    recipe = load_recipe(facts.family)
    model = (
        getattr(transformers, recipe.model_class)
        .from_pretrained(source, dtype=torch.float32, revision=options.revision)
        .eval()
    )
    say("export vision encoder (ONNX)")
    parity, encoder_bytes = _export_vision(model, facts, recipe, staging, options)
    say("measure encoder memory")
    activation = _activation(staging, facts, options)
    say("save projector and image_newline")
    projector_bytes = _save_projector(model, recipe, staging, facts)
    say(f"save language model ({options.quantization})")
    llm = _save_llm(model, facts, staging / LLM_DIR, options)
    say("save processor and hashes")
    _save_processor_and_config(source, config, staging, options.revision)
    vision = _vision_spec(facts, model, encoder_bytes, activation, options)
    return Manifest(
        schema_version=SCHEMA_VERSION,
        source={"model_id": model_id, "revision": options.revision or _revision(config)},
        versions=_versions(),
        vision=vision,
        llm=replace(llm, projector_bytes=projector_bytes),
        parity={
            f.output: {"max_abs_diff": f.max_abs_diff, "tolerance": f.tolerance} for f in parity
        },
        files=file_records(staging),
    )


def _save_llm(model, facts: ExportFacts, out_dir: Path, options: ExportOptions) -> LlmSpec:
    """The LLM alone: a causal LM, or a native family's text model + lm_head."""
    if isinstance(facts, NativeFacts):
        return save_native_language_model(model, out_dir, options.quantization, _llm_dtype(options))
    return save_language_model(
        extract_causal_lm(model), out_dir, options.quantization, _llm_dtype(options)
    )


def _llm_dtype(options: ExportOptions) -> torch.dtype:
    """The LLM's dtype: as asked, except LLM.int8, which bitsandbytes runs in fp16 only."""
    return torch.float16 if options.quantization == "8bit" else torch_dtype(options.dtype)


def _export_vision(
    model, facts: ExportFacts, recipe: Recipe, staging: Path, options: ExportOptions
) -> tuple[list[ParityFigure], int]:
    """Write the ONNX encoder and check it against the fp32 PyTorch graph."""
    if isinstance(facts, NativeFacts):
        path, dtype = staging / ENCODER_FILE, torch_dtype(options.dtype)
        opset = options.opset or recipe.default_opset
        return export_native_vision(model, facts, recipe, path, dtype, opset)
    reference = _encoder_graph(_attribute(model, recipe.vision_tower), facts).eval()
    dtype = torch_dtype(options.dtype)
    graph = copy.deepcopy(reference).to(dtype)
    side = facts.crop_size
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(recipe.probe_partitions, 3, side, side, generator=generator).to(dtype)
    path = staging / ENCODER_FILE
    export_encoder(graph, path, probe, options.opset or recipe.default_opset)
    figures = check_parity(reference, path, probe, recipe.tolerance_for(str(dtype).split(".")[-1]))
    encoder_bytes = sum(p.numel() * p.element_size() for p in graph.parameters())
    return figures, encoder_bytes


def _export_facts(config, source: str, revision: str | None) -> ExportFacts:
    """The model's facts; tiled and native families' settings come from their image processor."""
    if not is_tiled(config) and config.model_type not in NATIVE_FAMILIES:
        return model_facts(config)
    processor = load_processor(source, config.model_type, revision)
    if config.model_type in NATIVE_FAMILIES:
        return native_facts(config, processor.image_processor)
    return tiled_facts(config, processor.image_processor)


def _encoder_graph(vision_tower, facts: ExportFacts) -> torch.nn.Module:
    """The export graph of the family's tower: LLaVA's CLIP / SigLIP, or a tiled family's."""
    if isinstance(facts, TiledFacts):
        return TiledEncoderGraph(vision_tower, facts)
    return EncoderGraph(vision_tower, facts.layers)


def _activation(staging: Path, facts: ExportFacts, options: ExportOptions) -> int:
    """Measured activation bytes per partition (0 when measuring is switched off, and for the
    native families, whose one partition's activations grow with the image: the planner
    estimates those from the image's patch count)."""
    if not options.measure_memory or isinstance(facts, NativeFacts):
        return 0
    dtype = DTYPE_ALIASES[options.dtype]
    return activation_bytes_per_partition(staging / ENCODER_FILE, dtype, facts.crop_size)


def _save_projector(model, recipe: Recipe, staging: Path, facts: ExportFacts) -> int:
    """Projector weights and image_newline in one safetensors file; returns its byte size.

    A native family's merger runs inside the ONNX graph: nothing to save (0 bytes).
    """
    if isinstance(facts, NativeFacts):
        return 0
    tensors = {
        f"projector.{k}": v.detach().contiguous()
        for k, v in _attribute(model, recipe.projector).state_dict().items()
    }
    if recipe.image_newline:
        tensors["image_newline"] = _attribute(model, recipe.image_newline).detach().contiguous()
    path = staging / PROJECTOR_FILE
    save_file(tensors, str(path))
    return path.stat().st_size


def _save_processor_and_config(source: str, config, staging: Path, revision: str | None) -> None:
    """The processor (tokenizer, chat template, image processor) and the VLM config."""
    processor = load_processor(source, config.model_type, revision)
    processor.save_pretrained(staging / PROCESSOR_DIR)
    config.save_pretrained(staging / VLM_CONFIG_DIR)


def _vision_spec(
    facts: ExportFacts, model, encoder_bytes: int, activation: int, options: ExportOptions
) -> VisionSpec:
    """The manifest's description of the encoder and geometry."""
    vision_config = model.config.vision_config
    return VisionSpec(
        family=facts.family,
        crop_size=facts.crop_size,
        patch_size=facts.patch_size,
        tokens_per_partition=(facts.crop_size // facts.patch_size) ** 2,
        num_heads=facts.num_heads,
        hidden_size=vision_config.hidden_size,
        intermediate_size=int(getattr(vision_config, "intermediate_size", 0) or 0),
        vision_feature_layer=getattr(model.config, "vision_feature_layer", -1),
        layers_in_graph=facts.layers.layers_to_run,
        l_init=facts.layers.l_init,
        l_final=facts.layers.l_final,
        pinpoints=[list(p) for p in facts.pinpoints],
        image_token_id=facts.image_token_id,
        encoder_bytes=encoder_bytes,
        activation_bytes_per_partition=activation,
        dtype=DTYPE_ALIASES[options.dtype],
        signal=facts.signal,
        max_tiles=facts.max_tiles,
        **_tiled_spec(facts),
        **(native_spec_fields(facts, model) if isinstance(facts, NativeFacts) else {}),
    )


def _tiled_spec(facts: ExportFacts) -> dict[str, int]:
    """The tiling settings a tiled family's manifest records (none for LLaVA)."""
    if not isinstance(facts, TiledFacts):
        return {}
    return {
        "tile_merge": facts.merge,
        "min_tiles": facts.min_tiles,
        "longest_edge": facts.longest_edge,
    }


def _versions() -> dict[str, str]:
    """Versions of everything that shaped the bundle (read from metadata: nothing imported)."""
    names = ("torch", "transformers", "onnx", "bitsandbytes")
    return {"edge-hired": edge_hired.__version__, **{name: _version_of(name) for name in names}}


def _version_of(distribution: str) -> str:
    """An installed distribution's version, or 'not installed'."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _revision(config) -> str:
    """The hub commit the config came from, when the hub told us."""
    return str(getattr(config, "_commit_hash", None) or "local")


def _attribute(model, dotted: str):
    """model.a.b.c from "a.b.c"."""
    target = model
    for name in dotted.split("."):
        target = getattr(target, name)
    return target


def _check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace an existing directory unless asked to."""
    if out_dir.exists() and not overwrite:
        raise InvalidArgumentError(
            expected(
                f"output {out_dir}", "a path that does not exist yet (or --overwrite)", "it exists"
            )
        )


@contextmanager
def _staging_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling of out_dir, removed whatever happens: error, Ctrl-C or SIGTERM.

    Its name carries this process's id (`.OUT.partial-<pid>-<random>`), so a later export of
    the same output can tell a partial left by a killed process (SIGKILL, power loss) from one
    still being written, and removes the former first.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)
    prefix = f"{_partial_prefix(out_dir)}{os.getpid()}-"
    with sigterm_raises():
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=out_dir.parent))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _partial_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.partial-"


def remove_stale_partials(out_dir: Path) -> list[Path]:
    """Remove staging directories of `out_dir` whose export process is gone; return them."""
    removed = []
    for path in out_dir.parent.glob(f"{_partial_prefix(out_dir)}*"):
        pid = path.name.removeprefix(_partial_prefix(out_dir)).partition("-")[0]
        if path.is_dir() and not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid_text: str) -> bool:
    """Whether the process of that id runs (an unreadable id is an older, finished export's)."""
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _publish(staging: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished bundle into place (an old one only goes once the new one is whole)."""
    if overwrite and out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return
    staging.rename(out_dir)
