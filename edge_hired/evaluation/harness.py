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
from edge_hired.evaluation.report import EvalReport, SettingSummary, summarise
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import SelectionOptions
from edge_hired.sweep import ADAPTIVE_STRATEGIES, FULL, parse_budgets, parse_strategies

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_PROMPT_SUFFIX",
    "DEFAULT_STRATEGIES",
    "EvalConfigError",
    "EvalReport",
    "Setting",
    "SettingSummary",
    "evaluate",
    "plan_settings",
    "read_predictions",
]

DEFAULT_BUDGETS: tuple[str | float, ...] = ("full", 0.4, 0.2)
DEFAULT_STRATEGIES: tuple[str, ...] = ("hired", "spatial", "prumerge+")
#: The budget label adaptive strategies (they choose their own token count) run under, once.
ADAPTIVE = "adaptive"


#: The memory plan's visual-token cap for (image, prompt); None where none binds.
CapFor = Callable[[Any, str], "int | None"]


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

    def selection(self, cap: int | None = None) -> SelectionOptions:
        """Its selection; under a memory plan's `cap`, full keeps the cap's tokens by HiRED."""
        if self.strategy == FULL and cap is not None:
            return SelectionOptions(strategy="hired", cap=cap)
        return SelectionOptions(strategy=self.strategy, ratio=self.ratio, cap=cap)


# --- planning ---------------------------------------------------------------------------------


def plan_settings(
    budgets: Iterable[str | float] = DEFAULT_BUDGETS,
    strategies: Iterable[str] = DEFAULT_STRATEGIES,
) -> list[Setting]:
    """`full` once, each budgeted strategy at each ratio, each adaptive strategy once."""
    budgets = parse_budgets(budgets)
    chosen = parse_strategies(strategies)
    ratios = [b for b in budgets if b != FULL]
    plan = [Setting(FULL, FULL)] if FULL in budgets else []
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


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Asker:
    """Asks one pipeline questions the same way every time, and scores the answers."""

    pipeline: Runner
    prompt_suffix: str
    sampling: SamplingOptions
    score: Callable[[str, Sequence[str]], float]
    cap_for: CapFor | None = None

    def ask(self, image: Any, sample: EvalSample, setting: Setting) -> Any:
        prompt = sample.question + self.prompt_suffix
        cap = self.cap_for(image, prompt) if self.cap_for is not None else None
        return self.pipeline.run(image, prompt, setting.selection(cap), self.sampling)

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
    cap_for: CapFor | None = None,
) -> EvalReport:
    """Answer every sample under every setting (resuming `out_dir`), score, and summarise.

    `metric`: a name of `METRICS`. `budgets`: "full" and/or ratios in (0, 1]. `limit`: only
    the first N rows. `prompt_suffix` is appended to every question (lmms-eval's by default;
    "" for none). `model_label` is recorded in run.json so a resume with another model is
    refused. `on_prediction` is called with each new prediction once it is on disk. `cap_for`
    (the memory plan of --profile / --memory-cap / --ttft-target) caps every setting's tokens;
    under a binding cap `full` runs as hired at the cap.
    `warmup`: ask the first missing question once, untimed and unrecorded, so one-time costs
    (allocator, kernel selection) do not land in the first sample's TTFT.
    """
    score = get_metric(metric)
    settings, samples = plan_settings(budgets, strategies), _samples(rows, limit)
    sampling = SamplingOptions(max_new_tokens=max_new_tokens)
    asker = _Asker(pipeline, prompt_suffix, sampling, score, cap_for)
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
