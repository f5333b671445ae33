"""`edge-hired run` and `demo`: turn parsed arguments into one `Pipeline.run` call and print it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from edge_hired.cli.run_planning import planned_cap, ttft_comparison
from edge_hired.cli.runtime_flags import source_from_args, target_from_args
from edge_hired.planner.arithmetic import Plan
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.runtime.result import RunResult
from edge_hired.runtime.sources import default_image, default_model, load_target
from edge_hired.runtime.target import Target
from edge_hired.units import MIB

DEMO_NOTE = (
    "edge-hired demo: a tiny LLaVA-NeXT with RANDOM weights, built from configs on this machine.\n"
    "Its answer is noise; every stage (anyres preprocessing, CLIP encoder with CLS rows, HiRED\n"
    "selection, projector, LLM generation) is the real code. For a real model:\n"
    "  edge-hired run --model llava-hf/llava-v1.6-vicuna-7b-hf \\\n"
    "      --image IMG --prompt TEXT --budget 0.2\n"
)


def selection_from_args(args: argparse.Namespace) -> SelectionOptions:
    """Selection options from the shared flags."""
    return SelectionOptions(
        strategy=args.strategy,
        ratio=args.budget,
        tokens=args.tokens,
        alpha=args.alpha,
        newline=args.newline,
        seed=args.seed,
    )


def sampling_from_args(args: argparse.Namespace) -> SamplingOptions:
    """Generation options from the shared flags."""
    return SamplingOptions(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def print_result(result: RunResult, as_json: bool, streamed: bool) -> None:
    """JSON on stdout, or the (already streamed) answer plus a metrics block on stderr."""
    if as_json:
        print(result.to_json())
        return
    if not streamed:
        print(result.text, flush=True)
    print(result.summary(), file=sys.stderr)


def end_stream(as_json: bool) -> None:
    """Close the streamed answer's line (before any telemetry or metrics lines)."""
    if not as_json:
        print(flush=True)


def stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def load_pipeline(args: argparse.Namespace, target: Target) -> Pipeline:
    """From --bundle (exported, runs alone), --model (transformers checkpoint) or the demo."""
    _note(args, f"loading {target.source.kind} {target.source.path}")
    return load_target(target)


def _note(args: argparse.Namespace, text: str) -> None:
    """A progress line on stderr, unless the output is JSON."""
    if not args.json:
        print(f"[edge-hired] {text}", file=sys.stderr)


def run_from_args(args: argparse.Namespace) -> int:
    """Resolve the target, plan, load the model, answer once, print."""
    target = target_from_args(args, source_from_args(args), quiet=args.json)
    image = load_image(args.image or default_image())  # fail fast, before a long model load
    selection = selection_from_args(args)
    hw = (image.height, image.width)  # the plan reads config/manifest only: before loading
    plan = planned_cap(target, hw, args.prompt, selection, args.max_new_tokens, quiet=args.json)
    pipeline = load_pipeline(args, target)
    _note(args, f"running on {pipeline.device_reason}")
    from edge_hired.device.telemetry.recorder import recorder_for_run

    with recorder_for_run(args.telemetry, args.telemetry_backend, args.telemetry_interval) as rec:
        result = pipeline.run(
            image,
            args.prompt,
            replace(selection, cap=plan.budget_tokens if plan else None),
            sampling_from_args(args),
            on_text=None if args.json else stream,
            on_phase=rec.on_phase if rec else None,
        )
        end_stream(args.json)
    print_planned_result(result, plan, args.json)
    return 0


def print_planned_result(result: RunResult, plan: Plan | None, as_json: bool) -> None:
    """The result, with the plan's predicted TTFT and peak beside the measured ones."""
    if plan is None:
        print_result(result, as_json, streamed=not as_json)
    elif as_json:
        planned = {
            "predicted_peak_mib": plan.peak_bytes / MIB,  # beside peak_rss_mib, device_peak_mib
            "predicted_ttft_s": plan.predicted_ttft_s,
            "ttft_note": plan.ttft_note,
            "ttft_target_s": plan.ttft_target_s,
        }
        print(json.dumps({**result.to_dict(), **planned}))
    else:
        print_result(result, as_json, streamed=True)
        print(ttft_comparison(plan, result.ttft_s, result.visual_tokens_kept), file=sys.stderr)


def demo_from_args(args: argparse.Namespace) -> int:
    """The embedded default: tiny random model, sample image, HiRED at the given budget."""
    if not args.json:
        print(DEMO_NOTE, file=sys.stderr)
    pipeline = Pipeline.from_pretrained(default_model(), device="cpu")
    result = pipeline.run(
        default_image(),
        "Describe the image.",
        SelectionOptions(ratio=args.budget),
        SamplingOptions(max_new_tokens=24),
        on_text=None if args.json else stream,
    )
    end_stream(args.json)
    print_result(result, args.json, streamed=not args.json)
    return 0
