"""Side-by-side CPU benchmark: full vs HiRED 20% on a mid-size random LLaVA-NeXT, in one run.

The `mid-llava-next` preset has the proportions of a real model: a ViT-L/14-336 encoder and a
~1.07B Llama (16 layers, d 2048, 8 KV heads). A 672x672 image gives the paper's geometry: 5
partitions, 2880 visual tokens. After one warm-up round, every round runs, interleaved: the
full request, the HiRED 20% request, a stock encoder pass (`vision_tower(pixels,
output_hidden_states=True)`) and the pipeline's encoder (`pipeline.encode(pixels)`,
which stops at the feature layer and computes the CLS rows). Medians are printed next to an
ideal ratio computed from token counts and model shapes; how each ideal is computed is printed
beside it. CPU pressure (/proc/pressure/cpu) is printed per run so contended runs are visible.
Rounds stop early, after at least two, when the next one would overrun --time-budget.

    .venv/bin/python scripts/bench_cpu.py            # mid-size model, bf16, ~5-8 min on 2 cores
    .venv/bin/python scripts/bench_cpu.py --quick    # tiny model, smoke run, < 1 min
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from edge_hired.bench.measure import (
    FixedLength,
    RequestContext,
    choose_memory_source,
    measure_request,
)
from edge_hired.bench.options import BenchOptions, Setting, Slot
from edge_hired.device.contention import read_cpu_pressure, release_free_heap, stall_pct
from edge_hired.errors import EdgeHiredError
from edge_hired.models.tiny import default_checkpoint
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline

FULL, SMALL = Setting("full"), Setting("hired", 0.2)
STOCK, OURS = "stock encoder", "pipeline encoder"
MIN_ROUNDS = 2
PAPER_NOTE = (
    "for reference, paper Table 4 (LLaVA-NeXT-7B fp16, P40): TTFT full/20% 19.49/4.21 = 4.63x, "
    "decode 20%/full 2.30/0.49 = 4.69x\n  (its script resets the TTFT timer per forward call "
    "and counts preprocessing in throughput; PAPER.md)"
)
PROMPT = "Describe the image in detail."


# ---------------------------------------------------------------------------------------------
# Model shapes and the ideal ratios computed from them


@dataclass(frozen=True)
class Shapes:
    """What the ideal ratios need: layer counts, widths, parameter counts, bytes per value."""

    layers: int
    attn_width: int  # heads x head_dim
    kv_width: int  # KV heads x head_dim
    ffn: int
    hidden: int
    linear_params: int  # decoder layers + final norm: read per token, 2 FLOPs each per token
    head_params: int  # lm_head, read once per decode step
    value_bytes: int
    vit_layers: int
    vit_layers_run: int
    vit_width: int
    vit_ffn: int
    vit_heads: int
    vit_tokens: int  # per partition, CLS included
    partitions: int
    watched_layers: int  # 1 or 2 layers whose CLS rows the pipeline computes

    def prefill_flops(self, n: int) -> float:
        """2 FLOPs per weight per token, plus causal attention: QK^T and AV ~ n^2 x width."""
        return 2 * self.linear_params * n + 2 * self.layers * self.attn_width * n * n

    def kv_bytes(self, n: int) -> float:
        return 2 * self.layers * self.kv_width * self.value_bytes * n

    def decode_bytes(self, n: int) -> float:
        """Bytes read per decode step: every weight once plus the KV cache so far."""
        return (self.linear_params + self.head_params) * self.value_bytes + self.kv_bytes(n)

    def prefill_transient_bytes(self, n: int) -> float:
        """One decoder layer's prefill activations: gate and up (ffn) plus ~4 hidden-wide."""
        return n * (2 * self.ffn + 4 * self.hidden) * self.value_bytes

    def vit_layer_flops(self) -> float:
        t, d = self.vit_tokens, self.vit_width
        return self.partitions * (2 * t * (4 * d * d + 2 * d * self.vit_ffn) + 4 * t * t * d)

    def cls_row_flops(self) -> float:
        """q_CLS . k_j for every head and token of the watched layers (2 FLOPs per MAC)."""
        return 2 * self.watched_layers * self.partitions * self.vit_tokens * self.vit_width

    def select_ops(self) -> float:
        """Head sums plus a sort of each partition's scores."""
        n = self.vit_tokens - 1
        return self.partitions * (self.vit_heads * n + n * math.log2(n))


def shapes_of(pipeline: Pipeline, partitions: int) -> Shapes:
    llm = pipeline.model
    text, vision = llm.config.text_config, llm.config.vision_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    language = llm.model.language_model
    linear = sum(p.numel() for p in language.layers.parameters()) + language.norm.weight.numel()
    plan = pipeline.facts.layers
    return Shapes(
        text.num_hidden_layers,
        text.num_attention_heads * head_dim,
        text.num_key_value_heads * head_dim,
        text.intermediate_size,
        text.hidden_size,
        linear,
        llm.lm_head.weight.numel(),
        llm.lm_head.weight.element_size(),
        vision.num_hidden_layers,
        plan.layers_to_run,
        vision.hidden_size,
        vision.intermediate_size,
        vision.num_attention_heads,
        (vision.image_size // vision.patch_size) ** 2 + 1,
        partitions,
        len({plan.l_init, plan.l_final}),
    )


# ---------------------------------------------------------------------------------------------
# Measuring


def textured_image(size: int = 672, seed: int = 0) -> Image.Image:
    """Gradients plus random blocks: structure for the encoder, deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    blocks = rng.integers(0, 256, size=(size // 48 + 1, size // 48 + 1, 3))
    base = np.stack([x * 255 // size, y * 255 // size, (x + y) % 256], -1)
    return Image.fromarray(((base + blocks[y // 48, x // 48]) % 256).astype(np.uint8))


def timed_pass(step: Callable[[], object]) -> dict:
    """Wall time and CPU pressure of one call."""
    release_free_heap()
    before = read_cpu_pressure()
    cpu_start, start = time.process_time(), time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    cores = (time.process_time() - cpu_start) / seconds
    after = read_cpu_pressure()
    return {
        "seconds": seconds,
        "cpu_stall_pct": stall_pct(before, after, seconds),
        "cpu_some_avg10": None if after is None else after.avg10,
        "process_cores": cores,
    }


def encoder_steps(pipeline: Pipeline, pixels: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The stock tower (all layers, every hidden state) and the pipeline's encoder."""
    tower = pipeline.model.model.vision_tower
    dtype = next(tower.parameters()).dtype

    def stock() -> object:
        with torch.inference_mode():
            return tower(pixels.to(dtype), output_hidden_states=True)

    return {STOCK: stock, OURS: lambda: pipeline.encode(pixels)}


class Rounds:
    """Round-robin over the four tasks; the first `warmup` rounds are thrown away."""

    def __init__(self, ctx: RequestContext, image: Path, encoders: dict, warmup: int) -> None:
        self.ctx, self.image, self.encoders, self.warmup = ctx, image, encoders, warmup
        self.records: dict[str, list[dict]] = {FULL.label: [], SMALL.label: [], STOCK: [], OURS: []}
        self.order = 0

    def run(self, index: int) -> None:
        for setting in (FULL, SMALL):
            record = measure_request(self.ctx, Slot(index, self.image, setting), self.order)
            self._keep(index, setting.label, record, record["ttft_s"])
        for name, step in self.encoders.items():
            record = timed_pass(step)
            self._keep(index, name, record, record["seconds"])

    def _keep(self, index: int, name: str, record: dict, seconds: float) -> None:
        warm = index < self.warmup
        label = "warm-up" if warm else f"round {index - self.warmup + 1}"
        stall, avg10 = record["cpu_stall_pct"], record["cpu_some_avg10"]
        pressure = "n/a" if stall is None else f"CPU stall {stall:5.1f}% (some avg10 {avg10:5.1f})"
        pressure += f", {record['process_cores']:.2f} cores used"
        what = "TTFT" if name in (FULL.label, SMALL.label) else "time"
        print(f"  {label:<9} {name:<17} {what} {seconds:8.3f} s   {pressure}", flush=True)
        if not warm:
            self.order += 1
            self.records[name].append(record)


def run_rounds(rounds: Rounds, repeats: int, warmup: int, deadline: float) -> int:
    """Warm-up plus up to `repeats` rounds; stop early (after MIN_ROUNDS) before the deadline."""
    done = 0
    for index in range(warmup + repeats):
        start = time.perf_counter()
        rounds.run(index)
        done += index >= warmup
        spent = time.perf_counter() - start
        if done >= MIN_ROUNDS and done < repeats and time.perf_counter() + spent > deadline:
            print(
                f"  stopping after {done} of {repeats} rounds: the next would pass --time-budget",
                flush=True,
            )
            break
    return done


# ---------------------------------------------------------------------------------------------
# Report


def med(records: list[dict], key: str) -> float:
    """Median of a figure over runs (NaN where no run has it, e.g. without /proc/pressure)."""
    values = [r[key] for r in records if r[key] is not None]
    return statistics.median(values) if values else math.nan


def print_absolutes(rec: dict[str, list[dict]]) -> None:
    full, small = rec[FULL.label], rec[SMALL.label]
    print(f"\n{'median of the measured rounds':<34}{'full':>12}{'hired 20%':>12}")
    for title, key, spec in (
        ("visual tokens", "visual_tokens_kept", ".0f"),
        ("LLM input tokens", "llm_input_tokens", ".0f"),
        ("TTFT s", "ttft_s", ".3f"),
        ("  preprocess s", "preprocess_s", ".3f"),
        ("  encode s", "encode_s", ".3f"),
        ("  select s", "select_s", ".4f"),
        ("  prefill to first token s", "prefill_s", ".3f"),
        ("decode tokens/s", "decode_tokens_per_s", ".2f"),
        ("new tokens", "new_tokens", ".0f"),
        ("end-to-end s", "e2e_s", ".3f"),
        ("peak RSS MiB", "peak_rss_mib", ".0f"),
        ("RSS before the request MiB", "rss_before_mib", ".0f"),
        ("CPU stall % during the run", "cpu_stall_pct", ".1f"),
        ("cores used (CPU time / wall)", "process_cores", ".2f"),
    ):
        print(f"{title:<34}{med(full, key):>12{spec}}{med(small, key):>12{spec}}")
    print(
        f"{'encoder pass s: stock / pipeline':<34}{med(rec[STOCK], 'seconds'):>12.3f}"
        f"{med(rec[OURS], 'seconds'):>12.3f}"
    )


Line = tuple[str, float, float, str]  # figure, measured, ideal, how the ideal is computed


def ratio_lines(rec: dict[str, list[dict]], s: Shapes) -> list[Line]:
    """Every compared figure with its ideal."""
    return [
        *_ttft_lines(rec, s),
        _decode_line(rec, s),
        *_encoder_lines(rec, s),
        *_memory_lines(rec, s),
    ]


def _ttft_lines(rec: dict[str, list[dict]], s: Shapes) -> list[Line]:
    full, small = rec[FULL.label], rec[SMALL.label]
    n_full, n_small = med(full, "llm_input_tokens"), med(small, "llm_input_tokens")
    fixed = med(full, "preprocess_s") + med(full, "encode_s") + med(full, "select_s")
    prefill = med(full, "prefill_s")
    scaled = prefill * s.prefill_flops(n_small) / s.prefill_flops(n_full)
    measured = med(full, "ttft_s") / med(small, "ttft_s")
    return [
        (
            "TTFT full / TTFT 20%",
            measured,
            n_full / n_small,
            f"LLM input tokens {n_full:.0f}/{n_small:.0f} (if prefill dominated)",
        ),
        (
            "",
            math.nan,
            (fixed + prefill) / (fixed + scaled),
            f"measured fixed part {fixed:.2f} s (preprocess+encode+select) + full prefill "
            f"{prefill:.2f} s scaled by prefill FLOPs 2*W*n + 2*L*d*n^2",
        ),
    ]


def _decode_line(rec: dict[str, list[dict]], s: Shapes) -> Line:
    full, small = rec[FULL.label], rec[SMALL.label]
    new = med(full, "new_tokens")
    mean_context = {k: med(r, "llm_input_tokens") + new / 2 for k, r in (("f", full), ("s", small))}
    return (
        "decode tok/s 20% / full",
        med(small, "decode_tokens_per_s") / med(full, "decode_tokens_per_s"),
        s.decode_bytes(mean_context["f"]) / s.decode_bytes(mean_context["s"]),
        "bytes read per step: all weights + KV cache at the mean context (memory-bound)",
    )


def _encoder_lines(rec: dict[str, list[dict]], s: Shapes) -> list[Line]:
    small, layer = rec[SMALL.label], s.vit_layer_flops()
    return [
        (
            "HiRED select / encode (20%)",
            med(small, "select_s") / med(small, "encode_s"),
            s.select_ops() / (s.vit_layers_run * layer),
            "head sums + sort of P x N scores over encoder FLOPs (~0: it is numpy bookkeeping)",
        ),
        (
            "pipeline encoder / stock encoder",
            med(rec[OURS], "seconds") / med(rec[STOCK], "seconds"),
            (s.vit_layers_run * layer + s.cls_row_flops()) / (s.vit_layers * layer),
            f"{s.vit_layers_run} of {s.vit_layers} layers run (stock runs all for hidden_states) "
            f"+ CLS rows of {s.watched_layers} layers",
        ),
    ]


def _memory_lines(rec: dict[str, list[dict]], s: Shapes) -> list[Line]:
    full, small = rec[FULL.label], rec[SMALL.label]
    new = med(full, "new_tokens")
    grow = [
        s.kv_bytes(med(r, "llm_input_tokens") + new)
        + s.prefill_transient_bytes(med(r, "llm_input_tokens"))
        for r in (full, small)
    ]
    resident = med(full + small, "rss_before_mib") * 2**20
    return [
        (
            "peak RSS full / 20%",
            med(full, "peak_rss_mib") / med(small, "peak_rss_mib"),
            (resident + grow[0]) / (resident + grow[1]),
            "(RSS before + KV cache + one layer's prefill activations), full over 20%",
        ),
        (
            "  above RSS before, full / 20%",
            _above(full) / _above(small),
            grow[0] / grow[1],
            "KV cache + one layer's prefill activations: linear in LLM input tokens",
        ),
    ]


def _above(records: list[dict]) -> float:
    return statistics.median(r["peak_rss_mib"] - r["rss_before_mib"] for r in records)


def print_ratios(lines: list[Line]) -> None:
    print(f"\n{'figure':<34}{'measured':>10}{'ideal':>10}   how the ideal is computed")
    for name, measured, ideal, how in lines:
        shown = "" if math.isnan(measured) else _fmt(measured)
        print(f"{name:<34}{shown:>10}{_fmt(ideal):>10}   {how}")
    print(PAPER_NOTE)


def _fmt(value: float) -> str:
    return f"{value:.2e}" if abs(value) < 0.01 else f"{value:.3f}"


def pressure_line(label: str) -> str:
    reading = read_cpu_pressure()
    if reading is None:
        return f"CPU pressure {label}: /proc/pressure/cpu not available"
    return f"CPU pressure {label}: some avg10 {reading.avg10:.1f}%"


def print_pressure_summary(rec: dict[str, list[dict]]) -> None:
    runs = [r for rs in rec.values() for r in rs]
    stalls = [r["cpu_stall_pct"] for r in runs if r["cpu_stall_pct"] is not None]
    if stalls:
        print(
            f"CPU stall during measured runs: median {statistics.median(stalls):.1f}%, "
            f"max {max(stalls):.1f}% (share of each run's wall time some task waited for a CPU;"
            " near 0 on a quiet machine)"
        )
    cores = [r["process_cores"] for r in runs]
    print(
        f"cores used by this process during measured runs: median {statistics.median(cores):.2f}"
        f" of {torch.get_num_threads()} threads"
    )
    print(pressure_line("at the end"))


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny model smoke run")
    parser.add_argument("--repeats", type=int, help="measured rounds (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    parser.add_argument("--max-new-tokens", type=int, help="exactly this many (default 8, quick 4)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        help="default bf16 (AVX-512 bf16 ~3x fp32 here), quick fp32",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=540.0,
        metavar="SECONDS",
        help="wall time from start after which no new round begins (default 540)",
    )
    args = parser.parse_args(argv)
    args.preset = "tiny-llava-next" if args.quick else "mid-llava-next"
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.max_new_tokens = args.max_new_tokens or (4 if args.quick else 8)
    args.dtype = args.dtype or ("fp32" if args.quick else "bf16")
    return args


def load(args: argparse.Namespace) -> Pipeline:
    start = time.perf_counter()
    directory = default_checkpoint(args.preset)
    built = time.perf_counter()
    pipeline = Pipeline.from_pretrained(str(directory), device="cpu", dtype=args.dtype)
    print(
        f"model {args.preset} ({directory}): checkpoint ready in {built - start:.1f} s, "
        f"loaded in {time.perf_counter() - built:.1f} s, {args.dtype}, "
        f"{torch.get_num_threads()} torch threads",
        flush=True,
    )
    return pipeline


def describe(pipeline: Pipeline, s: Shapes, args: argparse.Namespace) -> None:
    vision_params = sum(p.numel() for p in pipeline.model.model.vision_tower.parameters())
    print(
        f"shapes: ViT {s.vit_layers} layers x {s.vit_width} ({vision_params / 1e6:.0f} M params, "
        f"{s.vit_layers_run} run by the pipeline); LLM {s.layers} layers x {s.hidden}, "
        f"{(s.linear_params + s.head_params) / 1e9:.2f} B params read per token; "
        f"image 672x672 -> {s.partitions} partitions; prompt {PROMPT!r}; "
        f"{args.max_new_tokens} new tokens per request (exactly)",
        flush=True,
    )


def seconds_since_process_start() -> float:
    return time.time() - psutil.Process().create_time()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter() - seconds_since_process_start()  # imports included
    print(pressure_line("at the start"), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = load(args)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "textured-672.png"
        textured_image().save(image)
        pixels, geometry = pipeline.preprocess(Image.open(image).convert("RGB"))
        shapes = shapes_of(pipeline, geometry.num_partitions)
        describe(pipeline, shapes, args)
        ctx = RequestContext(
            pipeline,
            BenchOptions(prompt=PROMPT),
            SamplingOptions(max_new_tokens=args.max_new_tokens),
            choose_memory_source(torch.device("cpu"), None),
        )
        rounds = Rounds(ctx, image, encoder_steps(pipeline, pixels), args.warmup)
        measuring = time.perf_counter()
        with FixedLength(pipeline.generation_config, args.max_new_tokens):
            done = run_rounds(rounds, args.repeats, args.warmup, began + args.time_budget)
    print(
        f"{done} measured rounds (+{args.warmup} warm-up), interleaved: full, hired 20%, "
        f"{STOCK}, {OURS}"
    )
    print_absolutes(rounds.records)
    print_ratios(ratio_lines(rounds.records, shapes))
    print_pressure_summary(rounds.records)
    end = time.perf_counter()
    print(
        f"wall time: {end - began:.1f} s since the process started ({end - measuring:.1f} s "
        f"measuring, {measuring - began:.1f} s importing/building/loading)"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgeHiredError as error:
        print(f"bench_cpu: error: {error}", file=sys.stderr)
        sys.exit(2)
