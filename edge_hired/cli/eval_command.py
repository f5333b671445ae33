"""`edge-hired eval`: accuracy and cost of each strategy at each budget on a JSONL question set.

Argument parsing only; the work is one call to `edge_hired.evaluation.harness.evaluate`. Parsing
stays light (no torch import) so `edge-hired --help` is fast; the handler imports the harness.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_hired.cli.args import budgets_arg, positive_int, strategies_arg
from edge_hired.cli.runtime_flags import add_runtime_args, source_from_args, target_from_args
from edge_hired.evaluation.dataset import DEFAULT_PROMPT_SUFFIX
from edge_hired.evaluation.metrics import METRICS

if TYPE_CHECKING:
    from edge_hired.evaluation.report import EvalReport
    from edge_hired.runtime.target import Target

__all__ = ["add_eval_parser", "eval_from_args"]

DEFAULT_BUDGETS = "full,0.4,0.2"
DEFAULT_STRATEGIES = "hired,spatial,prumerge+"
DEFAULT_OUT_ROOT = Path("eval-results")
TINY_LABEL = "tiny-llava-next"


def suffix_text(text: str) -> str:
    r"""argparse type: the prompt suffix, with the two characters \n read as a new line."""
    return text.replace("\\n", "\n")


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    """`edge-hired eval`."""
    parser = subparsers.add_parser(
        "eval",
        help="score strategies and budgets on a JSONL question set (resumable)",
        description="Ask every question of a JSONL set under the unpruned baseline and each "
        "strategy at each budget; write predictions.jsonl (resumable), summary.json and "
        "summary.md with accuracy, retention against full, visual tokens kept and TTFT. "
        "Without --model/--bundle it runs the embedded random-weight demo model; without --data "
        "the small synthetic set shipped with edge-hired.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        metavar="DIR_OR_HUB_ID",
        help="LLaVA or Qwen-VL checkpoint (default: the tiny demo model)",
    )
    source.add_argument("--bundle", metavar="DIR", help="a bundle written by `edge-hired export`")
    parser.add_argument(
        "--data",
        metavar="FILE.jsonl",
        help='rows {"image", "question", "answers", "id"} (default: built-in set)',
    )
    parser.add_argument(
        "--metric",
        choices=list(METRICS),
        default="vqa",
        help="vqa (VQAv2 accuracy), anls (DocVQA), relaxed (ChartQA), exact",
    )
    _add_sweep_args(parser)
    add_runtime_args(parser)
    parser.add_argument("--json", action="store_true", help="print summary.json, not the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=eval_from_args)


def _add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """What is asked, under which settings, and where the answers go."""
    parser.add_argument(
        "--budgets",
        type=budgets_arg,
        default=budgets_arg(DEFAULT_BUDGETS),
        metavar="LIST",
        help=f"comma-separated (default {DEFAULT_BUDGETS})",
    )
    parser.add_argument(
        "--strategies",
        type=strategies_arg,
        default=strategies_arg(DEFAULT_STRATEGIES),
        metavar="LIST",
        help=f"comma-separated (default {DEFAULT_STRATEGIES}); prumerge and "
        "prumerge+ pick their own token count and run once",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N rows")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output directory; rerun with the same one "
        f"to resume (default {DEFAULT_OUT_ROOT}/<model>-<data>-<metric>)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=16,
        metavar="N",
        help="answer length cap (default 16, as lmms-eval for VQAv2)",
    )
    parser.add_argument(
        "--prompt-suffix",
        type=suffix_text,
        default=DEFAULT_PROMPT_SUFFIX,
        metavar="TEXT",
        help=r"appended to each question, \n for a new line "
        "(default: lmms-eval's 'Answer the question using a single word or "
        "phrase.'; '' for none)",
    )


def model_label(args: argparse.Namespace) -> str:
    """What the answers come from: an absolute path for local files, else the hub id."""
    given = args.bundle or args.model
    if given is None:
        return TINY_LABEL
    path = Path(given).expanduser()
    return str(path.resolve()) if path.exists() else str(given)


def default_out_dir(label: str, data: Path, metric: str) -> Path:
    """eval-results/<model>-<data>-<metric>, so rerunning the same command resumes."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", Path(label.rstrip("/")).name) or "model"
    return DEFAULT_OUT_ROOT / f"{name}-{data.stem}-{metric}"


def _announce(label: str) -> None:
    print(f"[edge-hired] loading {label}", file=sys.stderr)
    if label == TINY_LABEL:
        print(
            "[edge-hired] the tiny demo model has RANDOM weights: its accuracy is noise; "
            "every stage is the real code",
            file=sys.stderr,
        )


def _print_report(report: EvalReport, as_json: bool) -> None:
    """The summary on stdout (table or JSON), where it came from on stderr."""
    print(json.dumps(report.to_dict(), indent=2) if as_json else report.to_markdown().rstrip())
    print(
        f"[edge-hired] {report.ran} answers computed, {report.reused} resumed; results in "
        f"{report.out_dir}",
        file=sys.stderr,
    )


def plan_caps(pipeline: Any, target: Target, max_new_tokens: int):
    """The memory plan's cap per (image, prompt), as `run` plans one request (None: not binding)."""
    from edge_hired.facts.run_facts import pipeline_run_facts, plan_for_target

    def cap_for(image: Any, prompt: str) -> int | None:
        facts = pipeline_run_facts(pipeline, target.source, (image.height, image.width), prompt)
        plan = plan_for_target(target, facts, max_new_tokens, "none", first_request=False)
        return plan.budget_tokens if plan.budget_tokens < facts.visual_tokens else None

    return cap_for


def eval_from_args(args: argparse.Namespace) -> int:
    """Validate the set and the settings, load the model, evaluate, print the summary."""
    from edge_hired.evaluation.dataset import default_eval_set_path, load_jsonl
    from edge_hired.evaluation.harness import evaluate, plan_settings
    from edge_hired.runtime.sources import load_target

    data = Path(args.data).expanduser() if args.data else default_eval_set_path()
    rows = load_jsonl(data)  # fail fast, before a long model load
    plan_settings(args.budgets, args.strategies)
    target = target_from_args(args, source_from_args(args), quiet=args.json)
    label = model_label(args)
    out = Path(args.out) if args.out else default_out_dir(label, data, args.metric)
    _announce(label)
    pipeline = load_target(target)
    report = evaluate(
        pipeline,
        rows,
        args.metric,
        out_dir=out,
        budgets=args.budgets,
        strategies=args.strategies,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        progress=not args.no_progress,
        prompt_suffix=args.prompt_suffix,
        model_label=label,
        cap_for=plan_caps(pipeline, target, args.max_new_tokens) if target.wants_plan else None,
    )
    _print_report(report, args.json)
    return 0
