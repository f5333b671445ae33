"""Where a pipeline comes from: a checkpoint (hub id or directory), an exported bundle, or the demo.

One loader for `run`, `bench`, `eval`, `show` and the lmms-eval adapter, so every command reads
the same flags the same way and the embedded demo model is chosen in one place.
"""

from __future__ import annotations

from pathlib import Path

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.runtime.pipeline import Pipeline

DEMO_PRESET = "tiny-llava-next"


def default_model() -> str:
    """The embedded demo checkpoint (random weights), built on first use."""
    from edge_hired.models.tiny import default_checkpoint

    return str(default_checkpoint(DEMO_PRESET))


def default_image() -> str:
    """The sample image shipped in the package."""
    from edge_hired.data import sample_image_path

    return str(sample_image_path())


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

    `device`: auto, cpu or cuda. `dtype` (fp32, fp16, bf16): the compute dtype (None: chosen
    for the device). `quantization` (none, 8bit, 4bit) quantizes a checkpoint's LLM as it loads;
    a bundle's is fixed at export. `providers` and `verify` apply to bundles only.
    """
    if model is not None and bundle is not None:
        raise InvalidArgumentError(expected("model and bundle", "one of them", "both"))
    if bundle is None:
        checkpoint = model or default_model()
        return Pipeline.from_pretrained(
            checkpoint, device=device, dtype=dtype, quantization=quantization
        )
    if quantization != "none":
        raise InvalidArgumentError(
            expected("quantization with a bundle", "none (fixed at export)", quantization)
        )
    from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline

    options = BundleLoadOptions(verify=verify, providers=providers, device=device, dtype=dtype)
    return load_bundle_pipeline(bundle, options)


def providers_arg(text: str | None) -> tuple[str, ...] | None:
    """`--providers cuda,cpu` as a tuple; None (choose automatically) when empty."""
    return tuple(p for p in (text or "").split(",") if p) or None
