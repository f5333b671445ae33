"""Peak memory of the exported Qwen-VL vision encoder against the planner's encoder-activation line.

    PYTHONPATH=. .venv/bin/python scripts/measure_native_encoder.py \
        [--presets tiny-qwen3-vl,tiny-qwen2.5-vl] [--dtypes fp32,fp16] [--grids 32x32,64x64]

Each preset (random weights) is exported to a bundle in a temporary directory in each dtype; each
patch grid then runs through the bundle's ONNX encoder once, in a fresh process, on ONNX Runtime
CPU: measured = peak RSS during the run - RSS once the session has loaded. The prediction is the
planner's "encoder activations" line for that bundle with its largest image set to the grid's N
patches (allocator "cpu", the typical allocator factor included), so the ratio column shows how
far the plan is from what the encoder really took.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edge_hired.bundle.manifest import read_manifest
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.models.tiny import build_checkpoint
from edge_hired.planner.arithmetic import predict_lines
from edge_hired.planner.costs import CostKind
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.profiles import load_profile
from edge_hired.units import MIB

_PROBE = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from edge_hired.bundle.manifest import read_manifest
from edge_hired.device.memory import current_rss_mib, peak_rss_mib, reset_peak_rss
from edge_hired.runtime.native_bundle import encoder_spec
from edge_hired.runtime.qwen_encoder_inputs import encoder_inputs
bundle, rows, cols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
vision = read_manifest(bundle).vision
session = ort.InferenceSession(f"{bundle}/vision_encoder.onnx", providers=["CPUExecutionProvider"])
feeds = encoder_inputs([1, rows, cols], encoder_spec(vision))
width = session.get_inputs()[0].shape[1]
feeds["pixel_values"] = np.zeros((rows * cols, width), dtype=vision.dtype)
loaded = current_rss_mib()
reset_peak_rss()
session.run(None, feeds)
print(json.dumps({"activation_mib": peak_rss_mib() - loaded}))
"""


def measured_mib(bundle: Path, rows: int, cols: int) -> float:
    """Peak MiB above the loaded session for one image of rows x cols patches."""
    argv = [sys.executable, "-c", _PROBE, str(bundle), str(rows), str(cols)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=1800)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["activation_mib"])


def predicted_bytes(bundle: Path, patches: int) -> int:
    """The plan's encoder-activation line with the bundle's largest image at `patches`."""
    inputs = PlanInputs.from_manifest(read_manifest(bundle))
    vision = inputs.vision
    units = patches // vision.merge**2
    largest = units * (vision.patch_size * vision.merge) ** 2
    inputs = dataclasses.replace(inputs, vision=dataclasses.replace(vision, max_pixels=largest))
    lines = predict_lines(inputs, load_profile("cpu"), PlanRequest(allocator="cpu"), 1)
    return sum(line.bytes for line in lines if line.kind is CostKind.ENCODER_ACTIVATIONS)


def export(preset: str, dtype: str, root: Path) -> Path:
    """The preset's bundle in `dtype` (its checkpoint built once per preset)."""
    source = root / preset
    if not source.exists():
        build_checkpoint(preset, source)
    bundle = root / f"{preset}-{dtype}"
    export_bundle(str(source), bundle, ExportOptions(quantization="none", dtype=dtype))
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", default="tiny-qwen3-vl,tiny-qwen2.5-vl", help="tiny presets, comma-separated"
    )
    parser.add_argument("--dtypes", default="fp32,fp16", help="export dtypes, comma-separated")
    parser.add_argument(
        "--grids",
        default="16x16,32x32,64x64,90x90,128x128",
        help="patch grids ROWSxCOLS (even numbers), comma-separated; N = rows x cols",
    )
    args = parser.parse_args()
    grids = [tuple(int(v) for v in grid.split("x")) for grid in args.grids.split(",")]
    print("| bundle | N | measured MiB | predicted MiB | predicted / measured |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="native-encoder-") as root:
        for preset in args.presets.split(","):
            for dtype in args.dtypes.split(","):
                bundle = export(preset, dtype, Path(root))
                for rows, cols in grids:
                    got = measured_mib(bundle, rows, cols)
                    want = predicted_bytes(bundle, rows * cols) / MIB
                    print(f"| {preset} {dtype} | {rows * cols} | {got:.1f} | {want:.1f} | "
                          f"{want / got:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
