"""One command that proves edge-hired on an NVIDIA GPU: parity, bitsandbytes, ONNX Runtime, 7B.

    python scripts/gpu_check.py [--out gpu_check.json] [--skip-7b]

No network: every model is built from configs with random weights (the tiny checkpoints of
`edge_hired.models.tiny`, a 7B-shaped LLaVA-NeXT built on the GPU). It uses whatever torch,
transformers and ONNX Runtime the machine has; each section runs in its own try/except and a
failure is a row of the table (with the error), never the end of the run. About 8 minutes on
one GPU, most of it the 7B section. Prints a table and writes one JSON file. On a machine with no
CUDA GPU visible to torch it exits 2 with one line.

Sections:
- parity: at budget 100% the pipeline's tokens equal stock `generate` (fp16 and bf16) on a tiny
  LLaVA-NeXT for three grids and on LLaVA-1.5; `hired` at 20% keeps exactly the budget;
  `prumerge+` runs.
- bitsandbytes: 4-bit and 8-bit exports of the tiny model, `run --bundle` on CUDA, the LLM's
  bytes on the device against the manifest's weight bytes.
- onnxruntime: the bundle's encoder with the best provider present (probed), max |ORT - PyTorch|
  per output.
- 7b: a 7B-shaped LLaVA-NeXT (ViT-L/14-336 + Vicuna-7B-shaped Llama, fp16): TTFT at 2880 visual
  tokens and at 20%, decode tokens/s, ratios against the ideal from token counts, and the device
  peak against the planner's prediction.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (height, width) giving three llava-v1.6 grids: 2x2, 1x2, 2x1.
GRIDS = {"2x2": (672, 672), "1x2": (300, 600), "2x1": (800, 400)}
PROMPT = "What is in the picture?"
NEW_TOKENS = 6
Row = dict[str, Any]


def versions() -> dict[str, str]:
    """Installed versions of what the check depends on (read from metadata, nothing imported)."""
    names = ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "bitsandbytes", "onnx")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def section(rows: list[Row], name: str, check: Callable[[], list[Row]]) -> None:
    """Run one section; its failure becomes one row with the error instead of ending the run."""
    started = time.perf_counter()
    try:
        found = check()
    except Exception as error:  # any failure is a finding of the check
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        found = [{"check": name, "ok": False, "detail": last[:300]}]
    for row in found:
        row.setdefault("section", name)
        row.setdefault("seconds", round(time.perf_counter() - started, 1))
    rows.extend(found)


def image(height: int, width: int):
    """A deterministic textured image (gradients plus blocks)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x * 7 + y * 3) % 256], -1)
    return Image.fromarray(pixels.astype(np.uint8))


# --- parity -------------------------------------------------------------------------------------


def stock_tokens(model: Any, processor: Any, picture: Any) -> list[int]:
    """Stock transformers `generate` on the same prompt, greedy."""
    import torch

    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(images=picture, text=text, return_tensors="pt").to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def parity(models: dict[str, Path]) -> list[Row]:
    """Full budget equals stock generate; hired 20% keeps the budget; prumerge+ runs."""
    import torch
    from transformers import AutoProcessor

    from edge_hired.runtime import loading
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

    rows: list[Row] = []
    sampling = SamplingOptions(max_new_tokens=NEW_TOKENS)
    for short, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        for preset, directory in models.items():
            pipeline = Pipeline.from_pretrained(str(directory), device="cuda", dtype=short)
            family = loading.FAMILIES[pipeline.parts.facts.family]
            stock = family.from_pretrained(directory, dtype=dtype, device_map={"": "cuda:0"})
            processor = AutoProcessor.from_pretrained(directory)
            grids = GRIDS if preset == "tiny-llava-next" else {"336": (336, 336)}
            for grid, hw in grids.items():
                picture = image(*hw)
                full = pipeline.run(picture, PROMPT, SelectionOptions(strategy="full"), sampling)
                want = stock_tokens(stock.eval(), processor, picture)
                rows.append(
                    {
                        "check": f"parity {preset} {grid} {short}",
                        "ok": full.token_ids == want,
                        "detail": f"pipeline {full.token_ids} stock {want}",
                    }
                )
            picture = image(*GRIDS["2x2"]) if preset == "tiny-llava-next" else image(336, 336)
            hired = pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), sampling)
            rows.append(
                {
                    "check": f"hired 20% {preset} {short}",
                    "ok": hired.visual_tokens_kept == hired.budget_tokens,
                    "detail": f"kept {hired.visual_tokens_kept} of budget {hired.budget_tokens}",
                }
            )
            merged = pipeline.run(picture, PROMPT, SelectionOptions(strategy="prumerge+"), sampling)
            rows.append(
                {
                    "check": f"prumerge+ {preset} {short}",
                    "ok": len(merged.token_ids) > 0,
                    "detail": f"kept {merged.visual_tokens_kept}, {len(merged.token_ids)} tokens",
                }
            )
            del stock, pipeline
            torch.cuda.empty_cache()
    return rows


# --- bitsandbytes and ONNX Runtime --------------------------------------------------------------


def device_bytes(module: Any) -> int:
    """Bytes of a module's parameters and buffers (quantized storage as stored)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def bitsandbytes_rows(tiny: Path, work: Path) -> list[Row]:
    """4-bit and 8-bit export, run --bundle on CUDA, device bytes against the manifest."""
    try:
        metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        return [{"check": "bitsandbytes", "ok": False, "detail": "bitsandbytes not installed"}]
    from edge_hired.export.exporter import ExportOptions, export_bundle
    from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import SelectionOptions

    rows: list[Row] = []
    for quant in ("4bit", "8bit"):
        out = work / f"tiny-{quant}"
        options = ExportOptions(quantization=quant, dtype="fp16", measure_memory=False)
        manifest = export_bundle(str(tiny), out, options)
        pipeline = load_bundle_pipeline(out, BundleLoadOptions(device="cuda"))
        result = pipeline.run(
            image(300, 600), PROMPT, SelectionOptions(ratio=0.2), SamplingOptions(3)
        )
        held = device_bytes(pipeline.parts.llm)
        rows.append(
            {
                "check": f"bitsandbytes {quant} export + run --bundle",
                "ok": len(result.token_ids) > 0,
                "detail": f"{len(result.token_ids)} tokens; encoder {result.encoder_provider}; "
                f"LLM on device {held} B vs manifest {manifest.llm.weight_bytes} B "
                f"({100 * (held - manifest.llm.weight_bytes) / manifest.llm.weight_bytes:+.1f}%)",
                "llm_device_bytes": held,
                "manifest_weight_bytes": manifest.llm.weight_bytes,
            }
        )
    return rows


def onnxruntime_rows(tiny: Path, work: Path) -> list[Row]:
    """The bundle's encoder through the best probed provider against PyTorch, per output."""
    import numpy as np
    import torch
    from transformers import LlavaNextForConditionalGeneration

    from edge_hired.bundle.layout import ENCODER_FILE
    from edge_hired.device.providers import choose_providers
    from edge_hired.export.exporter import ExportOptions, export_bundle
    from edge_hired.runtime.bundle_runtime import OnnxVisionEncoder
    from edge_hired.runtime.loading import model_facts
    from edge_hired.runtime.vision import TorchVisionEncoder

    out = work / "tiny-fp32"
    export_bundle(str(tiny), out, ExportOptions(quantization="none", dtype="fp32"))
    choice = choose_providers()
    encoder = OnnxVisionEncoder(out / ENCODER_FILE, choice.providers, "float32")
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny, device_map={"": "cuda:0"})
    reference = TorchVisionEncoder(model.model.vision_tower, model_facts(model.config).layers)
    pixels = torch.randn(5, 3, 336, 336, generator=torch.Generator().manual_seed(0))
    ort, torch_out = encoder(pixels), reference(pixels)
    names = ("features", "cls_init", "cls_final", "keys_final")
    diffs = {
        name: float(
            np.abs(
                getattr(ort, name).float().numpy() - getattr(torch_out, name).float().cpu().numpy()
            ).max()
        )
        for name in names
    }
    note = "" if encoder.provider != "CPUExecutionProvider" else " (CPU: no GPU provider loads)"
    return [
        {
            "check": f"onnxruntime encoder on {encoder.provider}{note}",
            "ok": max(diffs.values()) < 1e-3,
            "detail": f"{choice.reason}; max |ORT - PyTorch| "
            + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
            "max_abs_diff": diffs,
        }
    ]


# --- the 7B-shaped model ------------------------------------------------------------------------


def seven_b_rows(tiny: Path) -> list[Row]:
    """TTFT, decode and the device peak against the planner on a 7B-shaped LLaVA-NeXT, fp16."""
    import torch
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    from edge_hired.facts.config_inputs import inputs_from_config
    from edge_hired.models.reference_configs import llava_v16_vicuna_7b_config
    from edge_hired.planner.arithmetic import predicted_peak_bytes
    from edge_hired.planner.inputs import PlanRequest
    from edge_hired.profiles import load_profile
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.loading import VlmParts, model_facts
    from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
    from edge_hired.runtime.vision import TorchVisionEncoder

    free, total = torch.cuda.mem_get_info()
    if free < 17 * 2**30:
        return [
            {
                "check": "7b",
                "ok": False,
                "detail": f"skipped: {free / 2**30:.1f} GiB free, needs ~17",
            }
        ]
    processor = AutoProcessor.from_pretrained(tiny)
    config = llava_v16_vicuna_7b_config()
    config.image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    before = torch.cuda.mem_get_info()[0]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("cuda"):
            model = LlavaNextForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    weights_mib = (before - torch.cuda.mem_get_info()[0]) / 2**20
    facts = model_facts(config)
    inner = model.model
    parts = VlmParts(
        facts,
        processor,
        TorchVisionEncoder(inner.vision_tower, facts.layers),
        inner.multi_modal_projector,
        inner.image_newline,
        model,
        torch.device("cuda"),
        torch.float16,
    )
    pipeline = Pipeline(parts, "cuda: 7B-shaped random weights")
    picture, sampling = image(672, 672), SamplingOptions(max_new_tokens=32)
    pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), SamplingOptions(4))  # warm-up
    full = pipeline.run(picture, PROMPT, SelectionOptions(strategy="full"), sampling)
    fifth = pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), sampling)
    inputs = inputs_from_config(config, "none", "float16")
    profile = load_profile("t4-16gb")  # a discrete GPU profile: CUDA context, no desktop
    request = PlanRequest(
        prompt_tokens=64,
        max_new_tokens=32,
        partitions=5,
        visual_tokens=full.visual_tokens_total,
        allocator="cuda",
    )
    rows = []
    for label, result in (("full", full), ("20%", fifth)):
        predicted = (
            predicted_peak_bytes(inputs, profile, request, result.visual_tokens_kept) / 2**20
        )
        measured = result.device_peak_mib
        prefill_s, nan = result.timings_s["prefill_to_first_token"], float("nan")
        error = None if measured is None else 100 * (predicted - measured) / measured
        rows.append(
            {
                "check": f"7b {label}: {result.visual_tokens_kept} visual tokens",
                "ok": True,
                "detail": f"TTFT {result.ttft_s:.3f} s, prefill {prefill_s:.3f} s, decode "
                f"{result.decode_tokens_per_s:.1f} tok/s; device peak {measured or 0:.0f} MiB, "
                f"planner {predicted:.0f} MiB ({error if error is not None else nan:+.1f}%)",
                "ttft_s": result.ttft_s,
                "decode_tokens_per_s": result.decode_tokens_per_s,
                "device_peak_mib": measured,
                "planned_peak_mib": predicted,
                "plan_error_pct": error,
                "timings_s": result.timings_s,
            }
        )
    ideal = full.llm_input_tokens / fifth.llm_input_tokens
    decode = fifth.decode_tokens_per_s / max(full.decode_tokens_per_s, 1e-9)
    prefill = full.timings_s["prefill_to_first_token"] / fifth.timings_s["prefill_to_first_token"]
    rows.append(
        {
            "check": "7b ratios full / 20%",
            "ok": True,
            "detail": f"TTFT {full.ttft_s / fifth.ttft_s:.2f}x, prefill {prefill:.2f}x (ideal "
            f"from LLM tokens {ideal:.2f}x), decode {decode:.2f}x; "
            f"weights took {weights_mib:.0f} MiB of {total / 2**20:.0f}",
        }
    )
    return rows


# --- main ---------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    """The rows as a plain table."""
    lines = [f"{'ok':<4} {'s':>6}  {'check':<48} detail"]
    for row in rows:
        mark = "yes" if row["ok"] else "NO"
        lines.append(f"{mark:<4} {row['seconds']:>6}  {row['check']:<48} {row['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--skip-7b", action="store_true", help="leave out the 7B-shaped model")
    args = parser.parse_args(argv)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception as error:  # no torch, or a broken one
        print(f"gpu_check: cannot import torch ({error}); nothing to check", file=sys.stderr)
        return 2
    if not has_cuda:
        print(
            "gpu_check: no CUDA GPU visible to torch; this check needs an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edge_hired.models.tiny import build_checkpoint

    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edge-hired-gpu-check-") as tmp:
        work = Path(tmp)
        models = {p: build_checkpoint(p, work / p) for p in ("tiny-llava-next", "tiny-llava")}
        tiny = models["tiny-llava-next"]
        section(rows, "parity", lambda: parity(models))
        section(rows, "bitsandbytes", lambda: bitsandbytes_rows(tiny, work))
        section(rows, "onnxruntime", lambda: onnxruntime_rows(tiny, work))
        if not args.skip_7b:
            section(rows, "7b", lambda: seven_b_rows(tiny))
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "platform": platform.platform(),
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 1),
        "all_ok": all(row["ok"] for row in rows),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"gpu_check on {report['gpu']} ({report['seconds']} s)")
    print(table(rows))
    print(f"wrote {args.out}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
