"""One command that proves edge-hired on an NVIDIA GPU: parity, bitsandbytes, ONNX Runtime, 7B.

    python scripts/gpu_check.py [--out gpu_check.json] [--skip-7b]

No network: every model is built from configs with random weights (the tiny checkpoints of
`edge_hired.models.tiny`, a 7B-shaped LLaVA-NeXT built on the GPU). It uses whatever torch,
transformers and ONNX Runtime the machine has. Each section appends its rows as it measures
them; an exception adds one failed row and keeps the rows already measured, never ending the
run. About 8 minutes on one GPU, most of it the 7B section. Prints a table and writes one JSON
file; exits 0 when every row holds, 1 when one does not, 2 without a CUDA GPU visible to torch.

On a lent GPU machine with torch and transformers but no pydantic or bitsandbytes (and no
network): run `scripts/gpu_check_wheels.sh` here first (it fills the git-ignored .gpu_wheels/,
see its header for what and why), carry .gpu_wheels/ along, and there run the one command

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
        .gpu_wheels/*.whl && PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 \
        python3 scripts/gpu_check.py --out gpu_check.json

Sections, and when each row holds:
- parity: at budget 100% the pipeline's tokens equal stock `generate` (fp16 and bf16) on a tiny
  LLaVA-NeXT for three grids and on LLaVA-1.5; `hired` at 20% keeps exactly the budget;
  `prumerge+` runs.
- bitsandbytes: 4-bit and 8-bit exports of the tiny model run with `run --bundle` on CUDA, and
  the CUDA logits of the bundle's LLM on a fixed token sequence are compared with an fp32
  reference on the CPU built from the same bundle's weights, dequantized: max |CUDA - reference|
  over max |reference| must stay within QUANT_TOLERANCE (4-bit 2e-2, 8-bit 5e-2: fp16 compute
  and, for LLM.int8, int8 activations; measured on the CPU backend 3e-3 and 6e-3). The LLM's
  bytes on the device are reported against the manifest's.
- onnxruntime: the bundle's encoder on the best provider present (probed; TF32 off in ORT's CUDA
  provider) against the PyTorch encoder on CUDA with TF32 off for matmuls and cuDNN (TF32 alone
  puts an fp32 ViT ~2e-3 off), max |ORT - PyTorch| per output within 1e-3.
- 7b: a 7B-shaped LLaVA-NeXT (ViT-L/14-336 + Vicuna-7B-shaped Llama, fp16): TTFT at 2880 visual
  tokens and at 20%, decode tokens/s, ratios against the ideal from token counts; the device
  peak must stay under the planner's required bytes (peak + margin) for the request it really
  ran (its own prompt length, partitions and new tokens); decode tokens/s as a share of the
  bandwidth roofline (LLM weight bytes / measured device-to-device copy bandwidth), which must
  lie in (0, 1].
- decode (issue 19): on a tiny LLaVA-NeXT in fp32 with TF32 off, `--compile on`'s step (static
  KV cache, `torch.compile` mode "reduce-overhead", i.e. CUDA graphs) gives the eager engine's
  greedy tokens; then the mid-size preset (bf16) decodes eager vs compiled at batch 1 and 4
  (`scripts/bench_decode.py`'s rows), each as a share of the roofline from the weights and KV
  read per step and the measured device copy bandwidth, which must lie in (0, 1]. bf16 steps
  may differ from eager in the last bits (other kernels, other reduction orders), so only the
  fp32 row asks for equal tokens.
- qwen (issue 21): per tiny Qwen3-VL / Qwen2.5-VL / Qwen3.5, in fp32 with TF32 off, stock
  `generate` = the in-process run = the fp32 bundle's run (its ONNX encoder on the best probed
  provider; the Qwen graph uses TopK, GatherND, Where and Equal, worth seeing on CUDA) at 100%,
  and at 20% the bundle keeps the in-process run's merge units and gives its tokens.
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


def section(rows: list[Row], name: str, check: Callable[[list[Row]], None]) -> None:
    """Run one section, which appends its rows as it measures them; an exception adds one
    failed row with the error and keeps the rows measured before it."""
    started = time.perf_counter()
    found: list[Row] = []
    try:
        check(found)
    except Exception as error:  # any failure is a finding of the check
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        found.append({"check": f"{name} (stopped)", "ok": False, "detail": last[:300]})
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


def parity(models: dict[str, Path], rows: list[Row]) -> None:
    """Full budget equals stock generate; hired 20% keeps the budget; prumerge+ runs."""
    import torch
    from transformers import AutoProcessor

    from edge_hired.runtime import loading
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

    sampling = SamplingOptions(max_new_tokens=NEW_TOKENS)
    for short, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        for preset, directory in models.items():
            pipeline = Pipeline.from_pretrained(str(directory), device="cuda", dtype=short)
            family = loading.FAMILIES[pipeline.facts.family]
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


# --- bitsandbytes and ONNX Runtime --------------------------------------------------------------


def device_bytes(module: Any) -> int:
    """Bytes of a module's parameters and buffers (quantized storage as stored)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


#: Largest max |CUDA - reference| / max |reference| of the LLM's logits per quantization.
QUANT_TOLERANCE = {"4bit": 2e-2, "8bit": 5e-2}
#: The fixed token sequence the quantized LLMs are compared on.
LOGIT_TOKENS = 16


def logits_row(check: str, got: Any, want: Any, tolerance: float) -> Row:
    """A row comparing logits with a reference: relative max difference within `tolerance`."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    scale = float(want.abs().max())
    error = float((got - want).abs().max()) / max(scale, 1e-12)
    return {
        "check": check,
        "ok": bool(error <= tolerance),
        "detail": f"max |logits - reference| = {error:.1e} of max |reference| {scale:.3g} "
        f"(tolerance {tolerance:g})",
        "relative_logit_error": error,
    }


def dequantized_weight(module: Any) -> Any | None:
    """The fp32 weight a bitsandbytes Linear stands for, or None for any other module."""
    import bitsandbytes as bnb

    weight = module.weight if hasattr(module, "weight") else None
    if isinstance(module, bnb.nn.Linear4bit):
        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float()
    if isinstance(module, bnb.nn.Linear8bitLt):  # LLM.int8: int8 rows, absmax per row / 127
        return weight.CB.float() * weight.SCB.float()[:, None] / 127
    return None


def dequantized_reference(quantized: Any) -> Any:
    """An fp32 model on the CPU with the quantized model's weights, dequantized."""
    import torch
    from transformers import AutoModelForCausalLM

    state = {name: p.detach().float().cpu() for name, p in quantized.named_parameters()}
    for name, module in quantized.named_modules():
        weight = dequantized_weight(module)
        if weight is not None:
            state[f"{name}.weight"] = weight.cpu()
    reference = AutoModelForCausalLM.from_config(quantized.config, dtype=torch.float32)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"reference: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return reference.eval()


def llm_logits(model: Any, vocab: int) -> Any:
    """Logits of `model` on the fixed token sequence (on the model's device)."""
    import torch

    ids = (torch.arange(LOGIT_TOKENS) * 7 + 3)[None] % vocab
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(input_ids=ids.to(device)).logits


def quantized_rows(tiny: Path, work: Path, rows: list[Row], device: str = "cuda") -> None:
    """Per quantization: export, run --bundle on `device`, and its logits against the CPU
    reference dequantized from the same bundle."""
    try:
        metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        rows.append({"check": "bitsandbytes", "ok": False, "detail": "bitsandbytes not installed"})
        return
    for quant in QUANT_TOLERANCE:
        bundle = export_quantized(tiny, work, quant)
        quantized_bundle_rows(bundle, quant, rows, device)


def export_quantized(tiny: Path, work: Path, quant: str) -> Path:
    from edge_hired.export.exporter import ExportOptions, export_bundle

    out = work / f"tiny-{quant}"
    options = ExportOptions(quantization=quant, dtype="fp16", measure_memory=False)
    export_bundle(str(tiny), out, options)
    return out


def quantized_bundle_rows(bundle: Path, quant: str, rows: list[Row], device: str) -> None:
    """Run the bundle on `device` (a row), then compare its LLM's logits (a row)."""
    from edge_hired.bundle.layout import LLM_DIR
    from edge_hired.bundle.manifest import read_manifest
    from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.language_model import load_language_model
    from edge_hired.runtime.pipeline import SelectionOptions

    manifest = read_manifest(bundle)
    pipeline = load_bundle_pipeline(bundle, BundleLoadOptions(device=device))
    result = pipeline.run(image(300, 600), PROMPT, SelectionOptions(ratio=0.2), SamplingOptions(3))
    held, saved = device_bytes(pipeline.model), manifest.llm.weight_bytes
    rows.append(
        {
            "check": f"bitsandbytes {quant} export + run --bundle",
            "ok": len(result.token_ids) == 3,
            "detail": f"{len(result.token_ids)} tokens; encoder {result.encoder_provider}; "
            f"LLM on device {held} B vs manifest {saved} B ({100 * (held - saved) / saved:+.1f}%)",
            "llm_device_bytes": held,
            "manifest_weight_bytes": saved,
        }
    )
    import torch

    reference = dequantized_reference(load_language_model(bundle / LLM_DIR, torch.device("cpu")))
    vocab = reference.config.vocab_size
    got = llm_logits(pipeline.model, vocab)
    check = f"bitsandbytes {quant} logits on {device} vs CPU dequantized fp32"
    rows.append(logits_row(check, got, llm_logits(reference, vocab), QUANT_TOLERANCE[quant]))


#: Largest max |ORT - PyTorch| per encoder output, both in fp32 without TF32.
ENCODER_TOLERANCE = 1e-3


class NoTf32:
    """TF32 off for matmuls and cuDNN inside the block, the previous settings back after."""

    def __init__(self, backends: Any = None) -> None:
        if backends is None:
            import torch

            backends = torch.backends
        self.backends = backends

    def __enter__(self) -> NoTf32:
        self.saved = (self.backends.cuda.matmul.allow_tf32, self.backends.cudnn.allow_tf32)
        self.backends.cuda.matmul.allow_tf32 = False
        self.backends.cudnn.allow_tf32 = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.backends.cuda.matmul.allow_tf32, self.backends.cudnn.allow_tf32 = self.saved


def parity_entries(providers: tuple[str, ...]) -> list[Any]:
    """The providers for the parity check: ORT's CUDA provider with TF32 off as well."""
    return [(n, {"use_tf32": "0"}) if n == "CUDAExecutionProvider" else n for n in providers]


def onnxruntime_rows(tiny: Path, work: Path, rows: list[Row]) -> None:
    """The bundle's encoder through the best probed provider against PyTorch, per output."""
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
    encoder = OnnxVisionEncoder(out / ENCODER_FILE, parity_entries(choice.providers), "float32")
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny, device_map={"": "cuda:0"})
    reference = TorchVisionEncoder(model.model.vision_tower, model_facts(model.config).layers)
    pixels = torch.randn(5, 3, 336, 336, generator=torch.Generator().manual_seed(0))
    with NoTf32():
        torch_out = reference(pixels)
    rows.append(encoder_row(encoder.provider, choice.reason, encoder(pixels), torch_out))


def encoder_row(provider: str, reason: str, ort: Any, reference: Any) -> Row:
    """Max |ORT - PyTorch| per encoder output, within ENCODER_TOLERANCE."""
    names = ("features", "cls_init", "cls_final", "keys_final")
    diffs = {
        name: float(
            (getattr(ort, name).float().cpu() - getattr(reference, name).float().cpu()).abs().max()
        )
        for name in names
    }
    note = "" if provider != "CPUExecutionProvider" else " (CPU: no GPU provider loads)"
    return {
        "check": f"onnxruntime encoder on {provider}{note}",
        "ok": max(diffs.values()) <= ENCODER_TOLERANCE,
        "detail": f"{reason}; max |ORT - PyTorch, TF32 off| "
        + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        + f" (tolerance {ENCODER_TOLERANCE:g})",
        "max_abs_diff": diffs,
    }


# --- Qwen-VL bundles ----------------------------------------------------------------------------

QWEN_PRESETS = ("tiny-qwen3-vl", "tiny-qwen2.5-vl", "tiny-qwen3.5")


def qwen_rows(work: Path, rows: list[Row], device: str = "cuda") -> None:
    """Per Qwen family: stock generate = the in-process run = the fp32 bundle's run at 100% on
    `device` (the bundle's encoder on the best probed provider, TF32 off), and the bundle's 20%
    keeps the in-process run's merge units and answers as it does."""
    from edge_hired.device.providers import choose_providers
    from edge_hired.export.exporter import ExportOptions, export_bundle
    from edge_hired.models.tiny import build_checkpoint
    from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

    sampling, picture = SamplingOptions(max_new_tokens=NEW_TOKENS), image(300, 500)
    providers = choose_providers().providers if device == "cuda" else ("CPUExecutionProvider",)
    options = BundleLoadOptions(device=device, dtype="fp32", providers=providers)
    settings = {"full": SelectionOptions(strategy="full"), "20%": SelectionOptions(ratio=0.2)}
    for preset in QWEN_PRESETS:
        checkpoint = build_checkpoint(preset, work / preset)
        bundle = work / f"{preset}-fp32"
        export_bundle(str(checkpoint), bundle, ExportOptions(quantization="none", dtype="fp32"))
        with NoTf32():
            local = Pipeline.from_pretrained(str(checkpoint), device=device, dtype="fp32")
            remote = load_bundle_pipeline(bundle, options)
            stock = qwen_stock_tokens(local, picture)
            runs = {
                (name, where): pipeline.run(picture, PROMPT, selection, sampling)
                for name, selection in settings.items()
                for where, pipeline in (("model", local), ("bundle", remote))
            }
        rows.append(qwen_row(preset, remote.encoder_provider, stock, runs))


def qwen_stock_tokens(pipeline: Any, picture: Any) -> list[int]:
    """Stock `generate` on the model the pipeline loaded: the prompt with one placeholder per
    merge unit, the processor's patches and grid."""
    import torch

    pixels = pipeline.processor.image_processor(images=picture, return_tensors="pt")
    count = int(pixels["image_grid_thw"].prod()) // 4
    ids, image_id = pipeline.prompt_ids(PROMPT), pipeline.facts.image_token_id
    at = int((ids == image_id).nonzero()[0, 0])
    ids = torch.cat([ids[:at], ids.new_full((count,), image_id), ids[at + 1 :]])[None]
    device = pipeline.device
    inputs = {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "mm_token_type_ids": (ids == image_id).to(torch.int32).to(device),
        "pixel_values": pixels["pixel_values"].to(device),
        "image_grid_thw": pixels["image_grid_thw"].to(device),
    }
    with torch.inference_mode():
        out = pipeline.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


def qwen_row(preset: str, provider: str, stock: list[int], runs: dict) -> Row:
    """One family's row: 100% from the model and from the bundle = stock; 20% bundle = model."""
    full_model, full_bundle = runs["full", "model"], runs["full", "bundle"]
    fifth_model, fifth_bundle = runs["20%", "model"], runs["20%", "bundle"]
    same_fifth = (fifth_bundle.kept, fifth_bundle.token_ids) == (
        fifth_model.kept,
        fifth_model.token_ids,
    )
    return {
        "check": f"qwen {preset}: bundle (encoder on {provider}) = model = stock",
        "ok": full_model.token_ids == full_bundle.token_ids == stock and same_fifth,
        "detail": f"stock {stock}; 100% model {full_model.token_ids} bundle "
        f"{full_bundle.token_ids}; 20% kept {fifth_bundle.visual_tokens_kept} of "
        f"{fifth_bundle.visual_tokens_total}, same units and tokens as the model: {same_fifth}",
    }


# --- the 7B-shaped model ------------------------------------------------------------------------


def seven_b_rows(tiny: Path, rows: list[Row]) -> None:
    """TTFT, decode and the device peak against the planner on a 7B-shaped LLaVA-NeXT, fp16."""
    import torch

    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import SelectionOptions

    free, total = torch.cuda.mem_get_info()
    if free < 17 * 2**30:
        detail = f"skipped: {free / 2**30:.1f} GiB free, needs ~17"
        rows.append({"check": "7b", "ok": False, "detail": detail})
        return
    model, config, weights_mib = build_7b(tiny)
    pipeline = pipeline_7b(model, config, tiny)
    picture, sampling = image(672, 672), SamplingOptions(max_new_tokens=SEVEN_B_NEW_TOKENS)
    pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), SamplingOptions(4))  # warm-up
    full = pipeline.run(picture, PROMPT, SelectionOptions(strategy="full"), sampling)
    fifth = pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), sampling)
    for label, result in (("full", full), ("20%", fifth)):
        rows.append(plan_row(label, result, config))
    rows.append(ratio_row(full, fifth, weights_mib, total))
    weight_bytes = device_bytes(model.model.language_model) + device_bytes(model.lm_head)
    rows.append(roofline_row(fifth.decode_tokens_per_s, weight_bytes, copy_bandwidth()))


SEVEN_B_NEW_TOKENS = 32


def build_7b(tiny: Path) -> tuple[Any, Any, float]:
    """The 7B-shaped LLaVA-NeXT in fp16 on the GPU, its config, and the MiB its weights took."""
    import torch
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    from edge_hired.models.reference_configs import llava_v16_vicuna_7b_config

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
    return model, config, (before - torch.cuda.mem_get_info()[0]) / 2**20


def pipeline_7b(model: Any, config: Any, tiny: Path) -> Any:
    import torch
    from transformers import AutoProcessor

    from edge_hired.runtime.loading import VlmParts, model_facts
    from edge_hired.runtime.pipeline import Pipeline
    from edge_hired.runtime.vision import TorchVisionEncoder

    facts, inner = model_facts(config), model.model
    parts = VlmParts(
        facts,
        AutoProcessor.from_pretrained(tiny),
        TorchVisionEncoder(inner.vision_tower, facts.layers),
        inner.multi_modal_projector,
        inner.image_newline,
        model,
        torch.device("cuda"),
        torch.float16,
    )
    return Pipeline(parts, "cuda: 7B-shaped random weights")


def planned_request(result: Any, new_tokens: int) -> Any:
    """The planner's request for a run that happened: its own text tokens (prompt, template and
    image newlines: every LLM input position that is not a kept visual token), its image's
    partitions and visual tokens, and the new tokens it was allowed."""
    from edge_hired.planner.inputs import PlanRequest

    return PlanRequest(
        prompt_tokens=result.llm_input_tokens - result.visual_tokens_kept,
        max_new_tokens=new_tokens,
        partitions=len(result.partition_budgets),
        visual_tokens=result.visual_tokens_total,
        image_hw=tuple(result.image_size) if result.image_size else None,  # (height, width)
        allocator="cuda",
    )


def plan_row(label: str, result: Any, config: Any) -> Row:
    """The device peak of a run against the planner's peak and required bytes for that run."""
    from edge_hired.facts.config_inputs import inputs_from_config
    from edge_hired.planner.arithmetic import predicted_peak_bytes, required_bytes
    from edge_hired.profiles import load_profile

    inputs = inputs_from_config(config, "none", "float16")
    profile = load_profile("t4-16gb")  # a discrete GPU profile: CUDA context, no desktop
    request = planned_request(result, SEVEN_B_NEW_TOKENS)
    kept = result.visual_tokens_kept
    predicted = predicted_peak_bytes(inputs, profile, request, kept) / 2**20
    required = required_bytes(inputs, profile, request, kept) / 2**20
    measured = result.device_peak_mib
    error = None if measured is None else 100 * (predicted - measured) / measured
    shown = "n/a" if error is None else f"{error:+.1f}%"
    return {
        "check": f"7b {label}: {kept} visual tokens, peak within the plan",
        "ok": measured is not None and measured <= required,
        "detail": f"TTFT {result.ttft_s:.3f} s, decode {result.decode_tokens_per_s:.1f} tok/s; "
        f"device peak {measured or 0:.0f} MiB, planner {predicted:.0f} MiB ({shown}), "
        f"required with margin {required:.0f} MiB; planned for {request.prompt_tokens} text "
        f"tokens, {request.partitions} partitions, {request.max_new_tokens} new",
        "ttft_s": result.ttft_s,
        "decode_tokens_per_s": result.decode_tokens_per_s,
        "device_peak_mib": measured,
        "planned_peak_mib": predicted,
        "required_mib": required,
        "plan_error_pct": error,
        "planned_prompt_tokens": request.prompt_tokens,
        "timings_s": result.timings_s,
    }


def ratio_row(full: Any, fifth: Any, weights_mib: float, total: int) -> Row:
    ideal = full.llm_input_tokens / fifth.llm_input_tokens
    decode = fifth.decode_tokens_per_s / max(full.decode_tokens_per_s, 1e-9)
    prefill = full.timings_s["prefill_to_first_token"] / fifth.timings_s["prefill_to_first_token"]
    return {
        "check": "7b ratios full / 20%",
        "ok": True,
        "detail": f"TTFT {full.ttft_s / fifth.ttft_s:.2f}x, prefill {prefill:.2f}x (ideal "
        f"from LLM tokens {ideal:.2f}x), decode {decode:.2f}x; "
        f"weights took {weights_mib:.0f} MiB of {total / 2**20:.0f}",
    }


def copy_bandwidth(megabytes: int = 1024, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read and written."""
    import torch

    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        target.copy_(source)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1000
    return 2 * source.numel() * repeats / seconds


def roofline_row(tokens_per_s: float, weight_bytes: int, bandwidth: float) -> Row:
    """Decode rate as a share of the bandwidth roofline: each token reads the LLM's weights
    once, so no decode beats bandwidth / weight bytes (the KV cache read makes it lower)."""
    roofline = bandwidth / weight_bytes
    share = tokens_per_s / roofline
    return {
        "check": "7b decode against the bandwidth roofline",
        "ok": bool(0 < share <= 1.0),
        "detail": f"decode {tokens_per_s:.1f} tok/s = {share:.1%} of the roofline "
        f"{roofline:.1f} tok/s (LLM weights {weight_bytes / 2**30:.2f} GiB / copy bandwidth "
        f"{bandwidth / 1e12:.2f} TB/s)",
        "roofline_tokens_per_s": roofline,
        "roofline_share": share,
        "copy_bandwidth_bytes_per_s": bandwidth,
    }


# --- decode: static KV cache and a compiled step (issue 19) ------------------------------------

DECODE_CONTEXT, DECODE_STEPS, DECODE_ROUNDS = 640, 32, 5


def decode_rows(tiny: Path, work: Path, rows: list[Row]) -> None:
    """Compiled = eager tokens in fp32; eager vs compiled tokens/s on the mid preset."""
    rows.append(decode_parity_row(tiny))
    import bench_decode  # scripts/ is on the path when this runs as a script

    from edge_hired.models.tiny import build_checkpoint
    from edge_hired.runtime.sources import load_pipeline

    pipeline = load_pipeline(str(build_checkpoint("mid-llava-next", work / "mid")), device="cuda")
    model, bandwidth = bench_decode.model_bytes(pipeline), copy_bandwidth()
    engines, decoder = bench_decode.engines_of(pipeline)
    first = bench_decode.prefill(engines["eager"], DECODE_CONTEXT)
    args = argparse.Namespace(rounds=DECODE_ROUNDS, steps=DECODE_STEPS)
    for batch in (1, 4):
        compile_s = bench_decode.warm_up(engines, first, batch, decoder)
        found = bench_decode.measure(engines, first, batch, args)
        for name, positions in (("eager", DECODE_CONTEXT), ("compiled", None)):
            rate = sorted(r for r, _ in found[name])[len(found[name]) // 2]
            kv = positions or bench_decode.length_bucket(DECODE_CONTEXT + DECODE_STEPS + 1)
            bound = bench_decode.roofline(model, batch, kv, bandwidth)
            extra = f", compile {compile_s:.1f} s" if name == "compiled" else ""
            rows.append(decode_speed_row(name, batch, rate, bound, extra))
    if decoder.step.record.fallback:
        rows.append(
            {"check": "decode compiled", "ok": False, "detail": decoder.step.record.fallback}
        )


def decode_parity_row(tiny: Path) -> Row:
    """Greedy tokens of the tiny model, fp32 without TF32: compiled step vs eager."""
    from edge_hired.runtime.compile_policy import torch_compiler
    from edge_hired.runtime.generation import SamplingOptions
    from edge_hired.runtime.pipeline import SelectionOptions
    from edge_hired.runtime.sources import load_pipeline
    from edge_hired.runtime.static_decode import StaticDecoder

    with NoTf32():
        pipeline = load_pipeline(str(tiny), device="cuda", dtype="fp32")
        picture, sampling = image(672, 672), SamplingOptions(max_new_tokens=24)
        eager = pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), sampling)
        pipeline.use_static_decode(StaticDecoder(pipeline.model, torch_compiler("cuda")))
        compiled = pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), sampling)
        again = pipeline.run(picture, PROMPT, SelectionOptions(ratio=0.2), sampling)
    same = eager.token_ids == compiled.token_ids == again.token_ids
    return {
        "check": "decode compiled = eager tokens (fp32)",
        "ok": bool(same and compiled.compile_s > 0 and again.compile_s == 0),
        "detail": f"{len(eager.token_ids)} tokens {'equal' if same else 'DIFFER'}; compile "
        f"{compiled.compile_s:.1f} s on the first request, {again.compile_s:.1f} s on the next; "
        f"decode {eager.decode_tokens_per_s:.0f} -> {again.decode_tokens_per_s:.0f} tok/s",
    }


def decode_speed_row(name: str, batch: int, rate: float, bound: float, extra: str) -> Row:
    share = rate / bound
    return {
        "check": f"decode {name} batch {batch} (mid, bf16)",
        "ok": bool(0 < share <= 1.0),
        "detail": f"{rate:.1f} tok/s = {share:.1%} of the roofline {bound:.1f} tok/s{extra}",
        "tokens_per_s": rate,
        "roofline_share": share,
    }


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
        section(rows, "parity", lambda found: parity(models, found))
        section(rows, "bitsandbytes", lambda found: quantized_rows(tiny, work, found))
        section(rows, "onnxruntime", lambda found: onnxruntime_rows(tiny, work, found))
        section(rows, "decode", lambda found: decode_rows(tiny, work, found))
        section(rows, "qwen", lambda found: qwen_rows(work, found))
        if not args.skip_7b:
            section(rows, "7b", lambda found: seven_b_rows(tiny, found))
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
