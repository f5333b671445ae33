"""Export cost and what it buys: export time, bundle sizes per quantization, ORT vs PyTorch encoder.

Exports a random-weight LLaVA-NeXT preset (default `mid-llava-next`: ViT-L/14-336 encoder and a
~1.07B Llama) once per quantization, then times the exported ONNX encoder against the in-process
PyTorch encoder on the same weights and the same 5-partition input, interleaved, medians.

    .venv/bin/python scripts/bench_export.py [--preset mid-llava-next] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge_hired.bundle.manifest import Manifest
from edge_hired.export.exporter import ExportOptions, export_bundle
from edge_hired.models.tiny import default_checkpoint
from edge_hired.runtime.bundle_runtime import OnnxVisionEncoder
from edge_hired.runtime.pipeline import Pipeline

SETTINGS = (("none", "fp32"), ("8bit", "fp16"), ("4bit", "fp16"))


def cpu_pressure() -> str:
    """`some avg10` of /proc/pressure/cpu, to tell contended runs apart."""
    try:
        return Path("/proc/pressure/cpu").read_text().split()[1]
    except (OSError, IndexError):
        return "n/a"


def export_all(model_dir: Path, root: Path) -> dict[str, tuple[Manifest, float, Path]]:
    """One bundle per (quantization, dtype); wall time of each export."""
    done = {}
    for quant, dtype in SETTINGS:
        out = root / f"{quant}-{dtype}"
        start = time.perf_counter()
        manifest = export_bundle(
            str(model_dir), out, ExportOptions(quantization=quant, dtype=dtype)
        )
        done[f"{quant}-{dtype}"] = (manifest, time.perf_counter() - start, out)
        print(
            f"exported {quant}-{dtype} in {done[f'{quant}-{dtype}'][1]:.1f} s "
            f"(cpu pressure {cpu_pressure()})",
            flush=True,
        )
    return done


def time_encoders(model_dir: Path, bundle: Path, repeats: int) -> dict[str, list[float]]:
    """ONNX Runtime (fp32 graph) vs the PyTorch encoder, interleaved, on 5 partitions."""
    pipeline = Pipeline.from_pretrained(str(model_dir), device="cpu", dtype="fp32")
    onnx = OnnxVisionEncoder(bundle / "vision_encoder.onnx", ("CPUExecutionProvider",), "float32")
    pixels = torch.from_numpy(
        np.random.default_rng(0).standard_normal((5, 3, 336, 336)).astype(np.float32)
    )
    runs = {"pytorch": pipeline.encode, "onnxruntime": onnx}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for call in runs.values():
        call(pixels)  # warm-up
    for _ in range(repeats):
        for name, call in runs.items():
            start = time.perf_counter()
            call(pixels)
            times[name].append(time.perf_counter() - start)
    return times


def report(exports: dict, times: dict[str, list[float]]) -> None:
    """Sizes, export times and the encoder ratio, side by side."""
    print("\nbundle            total MiB   LLM MiB  encoder MiB  export s")
    for name, (manifest, seconds, _path) in exports.items():
        total = sum(r.bytes for r in manifest.files.values()) / 2**20
        print(
            f"{name:<16}{total:>10.1f}{manifest.llm.weight_bytes / 2**20:>10.1f}"
            f"{manifest.vision.encoder_bytes / 2**20:>13.1f}{seconds:>10.1f}"
        )
    base = exports["none-fp32"][0].llm.weight_bytes
    for name in ("8bit-fp16", "4bit-fp16"):
        print(f"LLM bytes {name} / none-fp32: {exports[name][0].llm.weight_bytes / base:.3f}")
    torch_s, ort_s = (statistics.median(times[k]) for k in ("pytorch", "onnxruntime"))
    print(
        f"\nencoder, 5 partitions, fp32: PyTorch {torch_s:.2f} s, ONNX Runtime {ort_s:.2f} s, "
        f"ORT/PyTorch {ort_s / torch_s:.2f} (runs: {times})"
    )
    print(f"cpu pressure at the end: {cpu_pressure()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mid-llava-next")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-root", type=Path, help="where bundles go (default: a temporary dir)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model_dir = default_checkpoint(args.preset)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        root = args.out_root or Path(scratch)
        exports = export_all(model_dir, root)
        times = time_encoders(model_dir, exports["none-fp32"][2], args.repeats)
        report(exports, times)


if __name__ == "__main__":
    main()
