"""The summary of an evaluation: per setting, accuracy, retention, tokens kept and TTFT."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_hired.evaluation.records import PREDICTIONS_FILE, Key
from edge_hired.sweep import FULL

__all__ = ["EvalReport", "SettingSummary", "summarise"]


@dataclass(frozen=True)
class SettingSummary:
    """The figures of one setting over the evaluated samples."""

    budget: str
    strategy: str
    samples: int
    accuracy: float
    retention: float | None  # accuracy / full accuracy; None when full is absent or 0
    mean_visual_tokens_kept: float
    mean_visual_tokens_total: float
    mean_ttft_s: float


@dataclass(frozen=True)
class EvalReport:
    """What `evaluate` measured, and where it wrote it."""

    metric: str
    samples: int
    settings: tuple[SettingSummary, ...]
    out_dir: Path
    ran: int  # answers computed by this call
    reused: int  # answers found in predictions.jsonl from an earlier, interrupted call

    def row(self, budget: str, strategy: str) -> SettingSummary:
        """The summary of one setting, by budget label and strategy."""
        for summary in self.settings:
            if (summary.budget, summary.strategy) == (budget, strategy):
                return summary
        raise KeyError((budget, strategy))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (a mean over no answers is null)."""
        return {
            "metric": self.metric,
            "samples": self.samples,
            "predictions": PREDICTIONS_FILE,
            "settings": [_finite_or_none(asdict(s)) for s in self.settings],
        }

    def to_markdown(self) -> str:
        """The summary table, as summary.md holds it."""
        lines = [
            f"metric `{self.metric}` on {self.samples} samples (answers in {PREDICTIONS_FILE})",
            "",
            "| budget | strategy | samples | accuracy | retention | visual tokens kept "
            "| TTFT (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_markdown_row(s) for s in self.settings]
        return "\n".join(lines) + "\n"


def _finite_or_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _markdown_row(s: SettingSummary) -> str:
    retention = "n/a" if s.retention is None else f"{100 * s.retention:.1f}%"
    kept = f"{s.mean_visual_tokens_kept:.1f} of {s.mean_visual_tokens_total:.1f}"
    return (
        f"| {s.budget} | {s.strategy} | {s.samples} | {100 * s.accuracy:.1f}% | "
        f"{retention} | {kept} | {s.mean_ttft_s:.3f} |"
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _setting_summary(budget: str, strategy: str, got: list[Mapping[str, Any]]) -> SettingSummary:
    """Means over the predictions of one setting (retention is filled in afterwards)."""
    return SettingSummary(
        budget,
        strategy,
        len(got),
        _mean([r["score"] for r in got]),
        None,
        _mean([r["visual_tokens_kept"] for r in got]),
        _mean([r["visual_tokens_total"] for r in got]),
        _mean([r["ttft_s"] for r in got]),
    )


def summarise(
    records: Mapping[Key, Mapping[str, Any]],
    ids: Sequence[str],
    settings: Sequence[tuple[str, str]],
) -> tuple[SettingSummary, ...]:
    """Per (budget, strategy): mean score over the samples `ids`, retention against full (the
    setting whose strategy is "full"), mean tokens kept and TTFT."""
    rows = [
        _setting_summary(
            budget, strategy, [records[k] for i in ids if (k := (i, budget, strategy)) in records]
        )
        for budget, strategy in settings
    ]
    full = next((r.accuracy for r in rows if r.strategy == FULL), None)
    if full is None or not full > 0:
        return tuple(rows)
    return tuple(SettingSummary(**{**asdict(r), "retention": r.accuracy / full}) for r in rows)
