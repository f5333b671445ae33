"""`edge-hired export`: parse, then call `export_bundle` with a progress bar per stage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_hired.cli.args import positive_int
from edge_hired.units import EXPORT_DTYPES, MIB

DEFAULT_OUT_ROOT = Path(__file__).resolve().parents[2] / "export"


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired export MODEL --out DIR ...`."""
    parser = subparsers.add_parser(
        "export",
        help="split a checkpoint into an ONNX encoder + quantized LLM bundle",
        description="Writes a bundle directory: vision_encoder.onnx (features plus HiRED's "
        "signal rows: CLS attention or attention received; LLaVA and the tiled families: "
        "partitions dynamic, projector and image_newline beside it in safetensors; Qwen3-VL, "
        "Qwen2.5-VL, Qwen3.5: one image of any size, merged and DeepStack features, the merger "
        "inside the graph), the language model alone (bitsandbytes 4/8-bit or unquantized, "
        "safetensors), the processor, and manifest.json with versions, geometry, sha256 of "
        "every file and the ONNX-vs-PyTorch parity measured at export. Written to a temporary "
        "directory and renamed at the end: a failed export leaves nothing behind.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="hub id or local directory of a supported family"
    )
    parser.add_argument(
        "--out", type=Path, help="bundle directory (default: export/<model name>-<quant>)"
    )
    parser.add_argument(
        "--quant",
        choices=("4bit", "8bit", "none"),
        default="4bit",
        help="LLM weights: bitsandbytes NF4, LLM.int8, or unquantized (default 4bit)",
    )
    parser.add_argument(
        "--dtype",
        choices=EXPORT_DTYPES,
        default="fp16",
        help="encoder and LLM compute dtype (default fp16; 8bit always computes in fp16)",
    )
    parser.add_argument("--opset", type=positive_int, help="ONNX opset (default: the recipe's)")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    parser.add_argument(
        "--no-measure",
        action="store_true",
        help="skip measuring the encoder's memory per partition (planner then models it)",
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    parser.set_defaults(handler=export_from_args)


def default_out(model: str, quant: str) -> Path:
    """export/<last path part of the model>-<quant>."""
    return DEFAULT_OUT_ROOT / f"{Path(model.rstrip('/')).name}-{quant}"


def export_from_args(args: argparse.Namespace) -> int:
    """Run the export with a tqdm bar over its stages."""
    from tqdm import tqdm

    from edge_hired.export.exporter import EXPORT_STAGES, ExportOptions, export_bundle

    out = args.out or default_out(args.model, args.quant)
    options = ExportOptions(
        quantization=args.quant,
        dtype=args.dtype,
        opset=args.opset,
        revision=args.revision,
        overwrite=args.overwrite,
        measure_memory=not args.no_measure,
    )
    with tqdm(
        total=EXPORT_STAGES, desc="export", unit="stage", file=sys.stderr, disable=args.json
    ) as bar:
        started: list[str] = []

        def stage(name: str) -> None:  # called as each stage begins: the previous one is done
            bar.update(1 if started else 0)
            started.append(name)
            bar.set_postfix_str(name)

        manifest = export_bundle(args.model, out, options, progress=stage)
        bar.update(1)
    if args.json:
        print(json.dumps({"bundle": str(out), **json.loads(manifest.to_json())}))
    else:
        print(_summary(out, manifest))
    return 0


def _summary(out: Path, manifest) -> str:
    """What was written, how big, and how close ONNX is to PyTorch."""
    total = sum(r.bytes for r in manifest.files.values())
    parity = ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in manifest.parity.items())
    return "\n".join(
        [
            f"bundle      {out}",
            f"size        {total / MIB:.1f} MiB ({len(manifest.files)} files); "
            f"LLM {manifest.llm.weight_bytes / MIB:.1f} MiB {manifest.llm.quantization}, "
            f"encoder {manifest.vision.encoder_bytes / MIB:.1f} MiB {manifest.vision.dtype}",
            f"parity      max |ONNX - PyTorch|: {parity}",
            f"took        {manifest.export_seconds:.1f} s",
        ]
    )
