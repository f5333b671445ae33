"""Accuracy and cost of each token-selection strategy at each budget, on one evaluation set.

`evaluate` asks a `Pipeline` every question once per setting (the unpruned `full` baseline once,
every budgeted strategy at every budget, adaptive-count strategies once), scores the answers
with one metric and writes, into `out_dir`:

- `predictions.jsonl`: one line per (sample, setting), appended and flushed as each answer
  arrives, so an interrupted run resumes where it stopped (answers already there are not asked
  again; a half-written last line is dropped and redone);
- `summary.json` / `summary.md`: per setting, accuracy, retention against `full` (accuracy /
  full accuracy), mean visual tokens kept and mean time to first token;
- `run.json`: what the answers depend on (metric, prompt suffix, max new tokens, model), so a
  resume with other settings is refused instead of mixing two runs.

Samples run in order, every setting of a sample back to back (the image is decoded once, and
compared settings see the same machine load).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from edge_hired.errors import (
    BudgetError,
    InvalidArgumentError,
    ModelLoadError,
    UnknownStrategyError,
    expected,
)
from edge_hired.evaluation.dataset import DEFAULT_PROMPT_SUFFIX, EvalSample
from edge_hired.evaluation.metrics import get_metric
from edge_hired.evaluation.records import (
    PREDICTIONS_FILE,
    RUN_KEYS,
    SUMMARY_JSON,
    SUMMARY_MD,
    EvalConfigError,
    Key,
    append_line,
    check_run,
    read_predictions,
    write_atomically,
)
from edge_hired.evaluation.report import FULL, EvalReport, SettingSummary, summarise
from edge_hired.hired import STRATEGIES
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import SelectionOptions

__all__ = [
    "ADAPTIVE_STRATEGIES",
    "DEFAULT_BUDGETS",
    "DEFAULT_PROMPT_SUFFIX",
    "DEFAULT_STRATEGIES",
    "EvalConfigError",
    "EvalReport",
    "Setting",
    "SettingSummary",
    "evaluate",
    "load_pipeline",
    "parse_ratio",
    "plan_settings",
    "read_predictions",
]

DEFAULT_BUDGETS: tuple[str | float, ...] = ("full", 0.4, 0.2)
DEFAULT_STRATEGIES: tuple[str, ...] = ("hired", "spatial", "prumerge+")
#: Strategies that choose their own token count: run once, under the budget label "adaptive".
ADAPTIVE_STRATEGIES = ("prumerge", "prumerge+")
ADAPTIVE = "adaptive"


class Runner(Protocol):
    """What the harness needs of a pipeline (a `Pipeline`, a bundle pipeline, a test double)."""

    def run(
        self, image: Any, prompt: str, selection: SelectionOptions, sampling: SamplingOptions
    ) -> Any: ...


@dataclass(frozen=True)
class Setting:
    """One column of the comparison: a budget label and a strategy."""

    budget: str  # "full", "adaptive" or a ratio such as "0.2"
    strategy: str
    ratio: float | None = None

    def selection(self) -> SelectionOptions:
        return SelectionOptions(strategy=self.strategy, ratio=self.ratio)


# --- planning ---------------------------------------------------------------------------------


def parse_ratio(value: object) -> float:
    """A budget ratio in (0, 1], from a number or its text; BudgetError otherwise."""
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BudgetError(expected("budget", "'full' or a ratio in (0, 1]", value)) from None
    if not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise BudgetError(expected("budget", "'full' or a ratio in (0, 1]", value))
    return ratio


def _budgets(budgets: Iterable[str | float]) -> tuple[bool, list[float]]:
    """Whether `full` is asked for, and the distinct ratios in the order given."""
    with_full, ratios = False, []
    for budget in budgets:
        if isinstance(budget, str) and budget.strip().lower() == FULL:
            with_full = True
        elif (ratio := parse_ratio(budget)) not in ratios:
            ratios.append(ratio)
    return with_full, ratios


def _strategies(strategies: Iterable[str]) -> list[str]:
    """Distinct known strategies other than `full` (which the budget `full` selects)."""
    chosen: list[str] = []
    for strategy in strategies:
        if strategy == FULL:
            wanted = "a token-dropping strategy (the budget 'full' runs the baseline)"
            raise UnknownStrategyError(expected("strategy", wanted, FULL))
        if strategy not in STRATEGIES:
            known = ", ".join(s for s in STRATEGIES if s != FULL)
            raise UnknownStrategyError(expected("strategy", f"one of {known}", strategy))
        if strategy not in chosen:
            chosen.append(strategy)
    return chosen


def plan_settings(
    budgets: Iterable[str | float] = DEFAULT_BUDGETS,
    strategies: Iterable[str] = DEFAULT_STRATEGIES,
) -> list[Setting]:
    """`full` once, each budgeted strategy at each ratio, each adaptive strategy once."""
    budgets = list(budgets)
    with_full, ratios = _budgets(budgets)
    chosen = _strategies(strategies)
    plan = [Setting(FULL, FULL)] if with_full else []
    for ratio in ratios:
        plan += [Setting(f"{ratio:g}", s, ratio) for s in chosen if s not in ADAPTIVE_STRATEGIES]
    if ratios:
        plan += [Setting(ADAPTIVE, s) for s in chosen if s in ADAPTIVE_STRATEGIES]
    if not plan:
        raise BudgetError(
            expected(
                "budgets and strategies",
                "at least one setting to run",
                {"budgets": list(budgets), "strategies": chosen},
            )
        )
    return plan


# --- the pipeline -----------------------------------------------------------------------------

BUNDLE_MODULE = "edge_hired.runtime.bundle_runtime"


def _load_bundle(path: str | Path, device: str, providers: tuple[str, ...] | None = None) -> Runner:
    """The bundle runtime's pipeline, or a one-line error while this build has none."""
    try:
        from edge_hired.runtime.bundle_runtime import BundleLoadOptions, load_bundle_pipeline
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name not in (None, BUNDLE_MODULE):
            raise  # a dependency of the bundle runtime is missing: its own message says which
        raise ModelLoadError(
            f"{path}: bundles need the exporter's runtime ({BUNDLE_MODULE}), which this build "
            "does not have; evaluate a checkpoint with --model instead"
        ) from error
    return load_bundle_pipeline(path, BundleLoadOptions(providers=providers, device=device))


def load_pipeline(
    model: str | None = None,
    bundle: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    quantization: str = "none",
    providers: tuple[str, ...] | None = None,
) -> Runner:
    """A pipeline from a checkpoint (hub id or directory) or an exported bundle.

    `device`: auto, cpu or cuda. `dtype` (fp32, fp16, bf16) applies to checkpoints only.
    With neither, the embedded tiny random-weight model (built on first use): its answers are
    noise, but every stage runs.
    """
    if model is not None and bundle is not None:
        raise InvalidArgumentError(expected("model and bundle", "one of them", "both"))
    if bundle is not None:
        if dtype is not None:
            raise InvalidArgumentError(
                expected("dtype with a bundle", "none (the bundle's manifest fixes it)", dtype)
            )
        return _load_bundle(bundle, device, providers)
    from edge_hired.runtime.pipeline import Pipeline

    if model is None:
        from edge_hired.models.tiny import default_checkpoint

        model = str(default_checkpoint("tiny-llava-next"))
    return Pipeline.from_pretrained(model, device=device, dtype=dtype, quantization=quantization)


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Asker:
    """Asks one pipeline questions the same way every time, and scores the answers."""

    pipeline: Runner
    prompt_suffix: str
    sampling: SamplingOptions
    score: Callable[[str, Sequence[str]], float]

    def ask(self, image: Any, sample: EvalSample, setting: Setting) -> Any:
        prompt = sample.question + self.prompt_suffix
        return self.pipeline.run(image, prompt, setting.selection(), self.sampling)

    def predict(self, image: Any, sample: EvalSample, setting: Setting) -> dict[str, Any]:
        """Ask one question under one setting; the prediction line for predictions.jsonl."""
        result = self.ask(image, sample, setting)
        return {
            "id": sample.id,
            "budget": setting.budget,
            "strategy": setting.strategy,
            "prediction": result.text,
            "answers": list(sample.answers),
            "score": float(self.score(result.text, sample.answers)),
            "visual_tokens_kept": int(result.visual_tokens_kept),
            "visual_tokens_total": int(result.visual_tokens_total),
            "ttft_s": float(result.ttft_s),
        }


def _samples(rows: Sequence[EvalSample], limit: int | None) -> list[EvalSample]:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(expected("limit", "an integer >= 1 or None", limit))
    samples = list(rows)[:limit]
    if not samples:
        raise InvalidArgumentError(expected("rows", "at least one sample", samples))
    return samples


def _key(sample: EvalSample, setting: Setting) -> Key:
    return sample.id, setting.budget, setting.strategy


def _progress_bar(total: int, done: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=done,
        disable=not enabled,
        desc="eval",
        unit="answer",
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _answer(
    asker: _Asker,
    todo: list[tuple[EvalSample, Setting]],
    path: Path,
    records: dict[Key, dict[str, Any]],
    bar: tqdm,
    on_prediction: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Ask the missing questions, sample by sample, appending each answer as it arrives."""
    with path.open("a", encoding="utf-8") as sink:
        for sample, group in groupby(todo, key=lambda pair: pair[0]):
            image = load_image(sample.image)
            for _, setting in group:
                bar.set_postfix_str(f"{sample.id} {setting.budget}/{setting.strategy}")
                record = asker.predict(image, sample, setting)
                append_line(sink, record)
                records[_key(sample, setting)] = record
                bar.update()
                if on_prediction is not None:
                    on_prediction(record)


def evaluate(
    pipeline: Runner,
    rows: Sequence[EvalSample],
    metric: str = "vqa",
    *,
    out_dir: str | Path,
    budgets: Iterable[str | float] = DEFAULT_BUDGETS,
    strategies: Iterable[str] = DEFAULT_STRATEGIES,
    limit: int | None = None,
    max_new_tokens: int = 16,
    progress: bool = True,
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX,
    model_label: str | None = None,
    on_prediction: Callable[[dict[str, Any]], None] | None = None,
    warmup: bool = True,
) -> EvalReport:
    """Answer every sample under every setting (resuming `out_dir`), score, and summarise.

    `metric`: a name of `METRICS`. `budgets`: "full" and/or ratios in (0, 1]. `limit`: only
    the first N rows. `prompt_suffix` is appended to every question (lmms-eval's by default;
    "" for none). `model_label` is recorded in run.json so a resume with another model is
    refused. `on_prediction` is called with each new prediction once it is on disk.
    `warmup`: ask the first missing question once, untimed and unrecorded, so one-time costs
    (allocator, kernel selection) do not land in the first sample's TTFT.
    """
    score = get_metric(metric)
    settings, samples = plan_settings(budgets, strategies), _samples(rows, limit)
    asker = _Asker(pipeline, prompt_suffix, SamplingOptions(max_new_tokens=max_new_tokens), score)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = [metric, prompt_suffix, max_new_tokens, model_label]
    check_run(out, dict(zip(RUN_KEYS, config, strict=True)))
    records = read_predictions(out / PREDICTIONS_FILE)
    todo = [(s, t) for s in samples for t in settings if _key(s, t) not in records]
    if todo and warmup:
        asker.ask(load_image(todo[0][0].image), *todo[0])  # untimed: first-call costs
    total = len(samples) * len(settings)
    with _progress_bar(total, total - len(todo), progress) as bar:
        _answer(asker, todo, out / PREDICTIONS_FILE, records, bar, on_prediction)
    report = EvalReport(
        metric,
        len(samples),
        summarise(records, [s.id for s in samples], [(t.budget, t.strategy) for t in settings]),
        out,
        ran=len(todo),
        reused=total - len(todo),
    )
    write_atomically(out / SUMMARY_JSON, json.dumps(report.to_dict(), indent=2) + "\n")
    write_atomically(out / SUMMARY_MD, report.to_markdown())
    return report
