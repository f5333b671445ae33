"""Export the vision encoder to ONNX and prove it matches PyTorch, output by output.

The graph takes `pixel_values` [P, 3, H, W] with P dynamic and emits `features`, the per-head
signal (`cls_attn_init` / `cls_attn_final` for CLIP, `received_attn_init` /
`received_attn_final` for SigLIP) and `keys_final` (PruMerge's key similarity). After
export, ONNX Runtime runs a probe batch and every output is compared with PyTorch against the
recipe's declared tolerance; a miss raises `ExportParityError` naming the output and the gap.
Graphs of several named inputs (the Qwen-VL tower: patches plus grid-dependent indices) go
through `export_named` / `check_named_parity`, which compare the same way on a list of probes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_hired.errors import EdgeHiredError
from edge_hired.export.encoder_graph import INPUT_NAME, EncoderGraph

EXTERNAL_DATA_BYTES = 1 << 30  # protobuf caps a file at 2 GiB; move weights out well before


class ExportParityError(EdgeHiredError):
    """An ONNX output that differs from PyTorch by more than the recipe allows."""


@dataclass(frozen=True)
class ParityFigure:
    """Measured max |ONNX Runtime - PyTorch| of one output, and what was allowed."""

    output: str
    max_abs_diff: float
    tolerance: float
    where: tuple[int, ...]


def export_encoder(graph: EncoderGraph, path: Path, probe: torch.Tensor, opset: int) -> None:
    """Write `graph` to `path` (dynamo exporter), external data when the weights are large."""
    partitions = torch.export.Dim("partitions", min=1, max=64)
    export_named(graph, path, {INPUT_NAME: probe}, {INPUT_NAME: {0: partitions}}, opset)


def export_named(
    graph: torch.nn.Module,
    path: Path,
    inputs: Mapping[str, torch.Tensor],
    dynamic: Mapping[str, dict[int, Any]],
    opset: int,
) -> None:
    """Write a graph of several named inputs (its forward's keyword names) with dynamic axes."""
    weight_bytes = sum(p.numel() * p.element_size() for p in graph.parameters())
    with _quiet_exporter():
        torch.onnx.export(
            graph,
            (),
            str(path),
            kwargs=dict(inputs),
            input_names=list(inputs),
            output_names=list(graph.output_names),
            dynamic_shapes=dict(dynamic),
            dynamo=True,
            opset_version=opset,
            external_data=weight_bytes > EXTERNAL_DATA_BYTES,
            verbose=False,
        )


def check_named_parity(
    reference: torch.nn.Module,
    path: Path,
    probes: Sequence[Mapping[str, torch.Tensor]],
    tolerances: Mapping[str, float],
) -> list[ParityFigure]:
    """ONNX Runtime against the fp32 PyTorch reference on every probe, output by output.

    Each probe holds the graph's inputs by name, in its input dtypes; the reference gets its
    floating inputs in fp32. The figure kept per output is its worst over the probes.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    figures: dict[str, ParityFigure] = {}
    for probe in probes:
        as_fp32 = {k: v.float() if v.is_floating_point() else v for k, v in probe.items()}
        with torch.inference_mode():
            expected_out = [t.numpy() for t in reference(**as_fp32)]
        got = session.run(None, {k: v.numpy() for k, v in probe.items()})
        for name, want, have in zip(reference.output_names, expected_out, got, strict=True):
            _keep_worst(figures, _compare(name, want, have, tolerances[name]))
    _raise_on_miss(list(figures.values()))
    return list(figures.values())


def check_parity(
    reference: EncoderGraph, path: Path, probe: torch.Tensor, tolerances: dict[str, float]
) -> list[ParityFigure]:
    """Run ONNX Runtime and the fp32 PyTorch reference on the probe and on one partition.

    The probe is in the graph's input dtype; the reference always computes in fp32 from the
    source weights, so an fp16 export is measured against what the model really is.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    figures: dict[str, ParityFigure] = {}
    for batch in (probe, probe[:1]):
        with torch.inference_mode():
            expected_out = [t.numpy() for t in reference(batch.float())]
        got = session.run(None, {INPUT_NAME: batch.numpy()})
        for name, want, have in zip(reference.output_names, expected_out, got, strict=True):
            _keep_worst(figures, _compare(name, want, have, tolerances[name]))
    _raise_on_miss(list(figures.values()))
    return list(figures.values())


def _keep_worst(figures: dict[str, ParityFigure], figure: ParityFigure) -> None:
    """Record `figure` unless its output already has a larger difference."""
    known = figures.get(figure.output)
    if known is None or figure.max_abs_diff > known.max_abs_diff:
        figures[figure.output] = figure


def _compare(name: str, want: np.ndarray, have: np.ndarray, tolerance: float) -> ParityFigure:
    """One output's largest difference and where it is."""
    if want.shape != have.shape:
        raise ExportParityError(
            f"ONNX output {name}: expected shape {want.shape}, got {have.shape}"
        )
    diff = np.abs(want.astype(np.float64) - have.astype(np.float64))
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    return ParityFigure(name, float(diff.max()), tolerance, where)


def _raise_on_miss(figures: list[ParityFigure]) -> None:
    """The typed error for the first output past its tolerance."""
    for figure in figures:
        if not figure.max_abs_diff <= figure.tolerance:
            raise ExportParityError(
                f"ONNX output {figure.output}: max |diff| {figure.max_abs_diff:.3g} at "
                f"{list(figure.where)} exceeds the recipe's tolerance {figure.tolerance:.3g}"
            )


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's progress prints and known-harmless warnings during export."""
    noisy = logging.getLogger("torch.onnx")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        noisy.setLevel(level)
