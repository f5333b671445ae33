"""Where a pipeline comes from: a checkpoint (hub id or directory), an exported bundle, or the demo.

One loader for `run`, `bench`, `eval`, `show` and the lmms-eval adapter, so every command reads
the same flags the same way and the embedded demo model is chosen in one place.
"""

from __future__ import annotations

from pathlib import Path

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.static_decode import static_decoder_for
from edge_hired.runtime.target import ModelSource, Target, TargetFlags, resolve_target

DEMO_PRESET = "tiny-llava-next"


def default_model() -> str:
    """The embedded demo checkpoint (random weights), built on first use."""
    from edge_hired.models.tiny import default_checkpoint

    return str(default_checkpoint(DEMO_PRESET))


def default_image() -> str:
    """The sample image shipped in the package."""
    from edge_hired.data import sample_image_path

    return str(sample_image_path())


def model_source(model: str | None = None, bundle: str | Path | None = None) -> ModelSource:
    """The source the flags name: a bundle, a checkpoint, or (neither) the demo model."""
    if model is not None and bundle is not None:
        raise InvalidArgumentError(expected("model and bundle", "one of them", "both"))
    if bundle is not None:
        return ModelSource("bundle", str(bundle))
    return ModelSource("model", model or default_model())


def load_target(target: Target) -> Pipeline:
    """The pipeline of a resolved target: its source, loaded as it says (nothing re-decided)."""
    if target.source.kind == "model":
        pipeline = Pipeline.from_pretrained(target.source.path, target=target)
    else:
        from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline

        pipeline = load_bundle_pipeline(target.source.path, BundleLoadOptions(), target)
    pipeline.use_static_decode(static_decoder_for(target, pipeline.model))
    return pipeline


def load_pipeline(
    model: str | None = None,
    bundle: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    providers: tuple[str, ...] | None = None,
    verify: bool = True,
    quantization: str = "none",
) -> Pipeline:
    """A pipeline from a checkpoint or an exported bundle; with neither, the demo model.

    A library call's flags, resolved into a `Target` (`runtime.target`) and loaded: `device`
    auto, cpu or cuda; `dtype` (fp32, fp16, bf16) the compute dtype (None: chosen for the
    device); `quantization` (none, 8bit, 4bit) quantizes a checkpoint's LLM as it loads (a
    bundle's is fixed at export); `providers` and `verify` apply to bundles only.
    """
    flags = TargetFlags(
        device, dtype, quantization=quantization, providers=providers, verify=verify
    )
    return load_target(resolve_target(flags, model_source(model, bundle)))


def providers_arg(text: str | None) -> tuple[str, ...] | None:
    """`--providers cuda,cpu` as a tuple; None (choose automatically) when empty."""
    return tuple(p for p in (text or "").split(",") if p) or None
