"""Decode tokens/s, eager vs a compiled step on a static KV cache, against the bandwidth roofline.

Issue 19's benchmark. The `mid-llava-next` preset's ~1B Llama (16 layers, d 2048, 8 KV heads,
bf16) decodes after a text prefill of --context tokens (standing in for a prompt with HiRED's
kept visual tokens; the encoder plays no part in decode), at batch 1 and 4, through the engine
(`runtime.engine.Batch`): eager (a growing `DynamicCache`) and compiled (`--compile on`: a static
cache at its bucket and a `torch.compile`d step). The first compiled step of each batch size is
timed apart (compile seconds). Then rounds run the settings interleaved, each over --steps steps
from a fresh copy of the prefill; medians are printed with the CPU pressure seen during them
(/proc/pressure/cpu: share of the time some task waited for a CPU, other load skews the figures).

Roofline: a decode step reads the LLM's weights once (all but the input embeddings, of which it
reads a row) plus every row's KV cache, so no step beats (weights + rows x KV) / bandwidth; the
bandwidth is this machine's, measured as the median of several copies of a large tensor (bytes
read plus written). The share is measured tokens/s over that bound; the static cache reads its
whole bucket (masked positions too), which the KV column shows.

    .venv/bin/python scripts/bench_decode.py            # mid-size model, ~5-10 min on 2 cores
    .venv/bin/python scripts/bench_decode.py --quick    # tiny model, a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from edge_hired.device.contention import read_cpu_pressure, stall_pct
from edge_hired.models.tiny import build_checkpoint
from edge_hired.planner.buckets import length_bucket
from edge_hired.runtime.compile_policy import torch_compiler
from edge_hired.runtime.engine import Batch, Engine, Prefill
from edge_hired.runtime.kv import fresh_cache, layers_of
from edge_hired.runtime.prefix import SelectionOptions
from edge_hired.runtime.sources import load_pipeline
from edge_hired.runtime.static_decode import StaticDecoder

SETTINGS = ("eager", "compiled")


@dataclass(frozen=True)
class Model:
    """What the roofline needs of the LLM."""

    weight_bytes: int  # read once per step
    kv_bytes_per_position: int  # per row


def copy_bandwidth(mib: int = 512, repeats: int = 7) -> float:
    """Median bytes/s of a large tensor copy on this machine (bytes read plus written)."""
    source = torch.ones(mib * 2**20, dtype=torch.uint8)
    target = torch.empty_like(source)
    target.copy_(source)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        rates.append(2 * source.numel() / (time.perf_counter() - start))
    return statistics.median(rates)


def model_bytes(pipeline) -> Model:
    """LLM weights read per step (no vision tower, no input embeddings) and KV per position."""
    embeddings = pipeline.model.get_input_embeddings().weight
    weights = sum(
        p.numel() * p.element_size()
        for name, p in pipeline.model.named_parameters()
        if ("language_model" in name or "lm_head" in name) and p is not embeddings
    )
    config = pipeline.llm_config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_position = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim
    return Model(weights, per_position * embeddings.element_size())


def prefill(engine: Engine, context: int) -> Prefill:
    """A text-only prefill of `context` tokens (fixed ids: every setting sees the same)."""
    ids = torch.arange(context) % 1000 + 10
    return engine.prefill(ids[:0], ids, None, SelectionOptions())


def decode_seconds(engine: Engine, first: Prefill, rows: int, steps: int) -> float:
    """Seconds of `steps` steps of `rows` rows, each a fresh copy of `first`."""
    batch, position = Batch(engine), first.prompt_tokens
    for _ in range(rows):
        batch.join(replace(first, cache=fresh_cache(layers_of(first.cache))), reserve=steps + 1)
    drain(first.logits.device)
    start = time.perf_counter()
    for step in range(steps):
        batch.step([100 + step] * rows, [position + step] * rows)
    drain(first.logits.device)
    return time.perf_counter() - start


def drain(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def roofline(model: Model, rows: int, positions: int, bandwidth: float) -> float:
    """Tokens/s no decode of `rows` rows reading `positions` KV positions each can beat."""
    return rows * bandwidth / (model.weight_bytes + rows * positions * model.kv_bytes_per_position)


def measure(engines: dict[str, Engine], first: Prefill, rows: int, args) -> dict[str, list]:
    """Interleaved rounds: tokens/s and CPU stall percent per setting."""
    found: dict[str, list] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            before = read_cpu_pressure()
            seconds = decode_seconds(engine, first, rows, args.steps)
            stall = stall_pct(before, read_cpu_pressure(), seconds)
            found[name].append((rows * args.steps / seconds, stall))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, fewer steps")
    parser.add_argument("--context", type=int, default=640, help="prefill tokens per row")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dtype", help="compute dtype (default: the CPU's, fp32)")
    args = parser.parse_args(argv)
    preset = "tiny-llava-next" if args.quick else "mid-llava-next"
    with tempfile.TemporaryDirectory(prefix="edge-hired-bench-decode-") as tmp:
        start = time.perf_counter()
        path = build_checkpoint(preset, Path(tmp) / preset)
        pipeline = load_pipeline(str(path), device="cpu", dtype=args.dtype)
        print(
            f"{preset}: built and loaded in {time.perf_counter() - start:.0f} s, "
            f"{pipeline.compute_dtype}, {torch.get_num_threads()} threads",
            file=sys.stderr,
        )
        return report(pipeline, args)


def engines_of(pipeline) -> tuple[dict[str, Engine], StaticDecoder]:
    """The eager engine and one decoding on static caches with the device's compiled step."""
    eager = pipeline.engine_for(None)
    decoder = StaticDecoder(pipeline.model, torch_compiler(pipeline.device.type))
    pipeline.use_static_decode(decoder)
    return {"eager": eager, "compiled": pipeline.engine_for(None)}, decoder


def report(pipeline, args) -> int:
    model, bandwidth = model_bytes(pipeline), copy_bandwidth()
    engines, decoder = engines_of(pipeline)
    first = prefill(engines["eager"], args.context)
    bucket = length_bucket(args.context + args.steps + 1)
    print(
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; LLM weights read per step "
        f"{model.weight_bytes / 2**30:.2f} GiB; KV {model.kv_bytes_per_position / 1024:.0f} "
        f"KiB/position; context {args.context} (static bucket {bucket})"
    )
    header = f"{'batch':>5} {'setting':<9} {'tok/s':>8} {'roofline':>9} {'share':>6} "
    print(header + f"{'KV read':>8} {'stall%':>7}  compile")
    for rows in args.rows:
        compiled_s = warm_up(engines, first, rows, decoder)
        found = measure(engines, first, rows, args)
        for name in SETTINGS:
            rate = statistics.median(r for r, _ in found[name])
            stalls = [s for _, s in found[name] if s is not None]
            positions = bucket if name == "compiled" else args.context + args.steps // 2
            bound = roofline(model, rows, positions, bandwidth)
            stall = f"{statistics.median(stalls):7.0f}" if stalls else f"{'?':>7}"
            compile_note = f"{compiled_s:.1f} s (first step)" if name == "compiled" else ""
            print(
                f"{rows:>5} {name:<9} {rate:8.2f} {bound:9.2f} {rate / bound:6.1%} "
                f"{positions:>8} {stall}  {compile_note}"
            )
        ratio = statistics.median(r for r, _ in found["compiled"]) / statistics.median(
            r for r, _ in found["eager"]
        )
        print(f"{rows:>5} compiled / eager {ratio:.2f}x")
    if decoder.step.record.fallback:
        print(f"note: {decoder.step.record.fallback}")
    return 0


def warm_up(engines: dict[str, Engine], first: Prefill, rows: int, decoder) -> float:
    """One short run of each setting; the compiled one's compile seconds."""
    for engine in engines.values():
        decode_seconds(engine, first, rows, 2)
    return decoder.step.record.take_seconds()


if __name__ == "__main__":
    sys.exit(main())
