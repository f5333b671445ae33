"""The evaluation harness on the tiny random-weight LLaVA-NeXT: files, counts, resuming, CLI.

The model's answers are noise, so these tests check what the harness does with them (rows
written, pipeline calls made, figures summarised), never how good they are.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from edge_hired.cli.eval_command import add_eval_parser
from edge_hired.errors import EdgeHiredError
from edge_hired.evaluation.dataset import EvalDataError, default_eval_set_path, load_jsonl
from edge_hired.evaluation.harness import EvalConfigError, evaluate, read_predictions
from edge_hired.evaluation.lmms_adapter import continuation_logprob
from edge_hired.runtime.images import load_image
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions

pytestmark = pytest.mark.integration

SETTINGS = [("full", "full"), ("0.2", "hired"), ("0.2", "spatial")]
RUN = {
    "metric": "vqa",
    "budgets": ("full", 0.2),
    "strategies": ("hired", "spatial"),
    "limit": 4,
    "max_new_tokens": 2,
    "progress": False,
}


class Interrupted(Exception):
    """Raised from a callback to stop a run part-way, as Ctrl-C or a crash would."""


class CountingPipeline:
    """Wraps a pipeline and counts its `run` calls."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner, self.calls = inner, 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.run(*args, **kwargs)


@pytest.fixture(scope="module")
def pipeline(tiny_next_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_next_dir), device="cpu")


@pytest.fixture(scope="module")
def rows() -> list:
    return load_jsonl(default_eval_set_path())


@pytest.fixture(scope="module")
def complete_run(pipeline: Pipeline, rows: list, tmp_path_factory: pytest.TempPathFactory):
    counting = CountingPipeline(pipeline)
    out = tmp_path_factory.mktemp("complete")
    return evaluate(counting, rows, out_dir=out, **RUN), counting.calls, out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def keys(records: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["id"], r["budget"], r["strategy"]) for r in records}


def test_writes_one_prediction_per_sample_and_setting(complete_run, rows) -> None:
    report, calls, out = complete_run
    assert calls == 4 * 3 + 1  # every (sample, setting) once, plus one untimed warm-up
    assert (report.ran, report.reused) == (12, 0)
    records = lines(out / "predictions.jsonl")
    assert len(records) == 12
    assert keys(records) == {(s.id, b, st) for s in rows[:4] for b, st in SETTINGS}
    for record in records:
        assert set(record) >= {
            "id",
            "budget",
            "strategy",
            "prediction",
            "answers",
            "score",
            "visual_tokens_kept",
            "ttft_s",
        }
        assert record["ttft_s"] > 0 and 0 <= record["score"] <= 1
        full = record["strategy"] == "full"
        assert (record["visual_tokens_kept"] == record["visual_tokens_total"]) == full


def test_summary_table_matches_the_predictions(complete_run) -> None:
    _, _, out = complete_run
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [(s["budget"], s["strategy"]) for s in summary["settings"]] == SETTINGS
    records = lines(out / "predictions.jsonl")
    full_accuracy = None
    for row in summary["settings"]:
        mine = [
            r for r in records if (r["budget"], r["strategy"]) == (row["budget"], row["strategy"])
        ]
        assert row["samples"] == 4
        assert row["accuracy"] == pytest.approx(sum(r["score"] for r in mine) / 4)
        assert row["mean_visual_tokens_kept"] == pytest.approx(
            sum(r["visual_tokens_kept"] for r in mine) / 4
        )
        assert row["mean_ttft_s"] == pytest.approx(sum(r["ttft_s"] for r in mine) / 4)
        full_accuracy = row["accuracy"] if row["strategy"] == "full" else full_accuracy
        expected = row["accuracy"] / full_accuracy if full_accuracy else None
        assert row["retention"] == (pytest.approx(expected) if expected is not None else None)
    table = (out / "summary.md").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("| 0.2 |") for line in table) == 2
    assert sum(line.startswith("| full | full | 4 |") for line in table) == 1
    assert_table_matches_predictions(table, records)


def assert_table_matches_predictions(table: list[str], records: list[dict]) -> None:
    """Each row of summary.md, parsed, holds the means of its setting's predictions."""
    header = (
        "| budget | strategy | samples | accuracy | retention | visual tokens kept | TTFT (s) |"
    )
    rows = [line for line in table if line.startswith("| ") and line != header]
    assert header in table and len(rows) == len(SETTINGS)
    full = [r["score"] for r in records if r["strategy"] == "full"]
    full_accuracy = sum(full) / len(full)
    for line, (budget, strategy) in zip(rows, SETTINGS, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        mine = [r for r in records if (r["budget"], r["strategy"]) == (budget, strategy)]
        accuracy = sum(r["score"] for r in mine) / len(mine)
        assert cells[:3] == [budget, strategy, "4"]
        assert float(cells[3].removesuffix("%")) == pytest.approx(100 * accuracy, abs=0.05)
        if full_accuracy:
            retention = float(cells[4].removesuffix("%"))
            assert retention == pytest.approx(100 * accuracy / full_accuracy, abs=0.05)
        else:
            assert cells[4] == "n/a"
        kept, total = (float(v) for v in cells[5].split(" of "))
        assert kept == pytest.approx(sum(r["visual_tokens_kept"] for r in mine) / 4, abs=0.05)
        assert total == pytest.approx(sum(r["visual_tokens_total"] for r in mine) / 4, abs=0.05)
        assert float(cells[6]) == pytest.approx(sum(r["ttft_s"] for r in mine) / 4, abs=5e-4)


def test_an_interrupted_run_resumes_with_only_the_missing_answers(
    pipeline, rows, complete_run, tmp_path
) -> None:
    seen = []

    def stop_after_five(record: dict) -> None:
        seen.append(record)
        if len(seen) == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        evaluate(pipeline, rows, out_dir=tmp_path, on_prediction=stop_after_five, **RUN)
    first_part = (tmp_path / "predictions.jsonl").read_text(encoding="utf-8")
    assert len(first_part.splitlines()) == 5 and not (tmp_path / "summary.json").exists()

    counting = CountingPipeline(pipeline)
    report = evaluate(counting, rows, out_dir=tmp_path, warmup=False, **RUN)
    assert counting.calls == 7 and (report.ran, report.reused) == (7, 5)
    records = lines(tmp_path / "predictions.jsonl")
    assert (tmp_path / "predictions.jsonl").read_text(encoding="utf-8").startswith(first_part)
    assert len(records) == 12 and keys(records) == keys(
        lines(complete_run[2] / "predictions.jsonl")
    )


def test_a_half_written_last_line_is_redone(pipeline, rows, complete_run, tmp_path) -> None:
    complete = (complete_run[2] / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "run.json").write_text((complete_run[2] / "run.json").read_text(encoding="utf-8"))
    cut = "\n".join(complete[:8]) + "\n" + complete[8][: len(complete[8]) // 2]  # killed mid-line
    (tmp_path / "predictions.jsonl").write_text(cut, encoding="utf-8")
    counting = CountingPipeline(pipeline)
    evaluate(counting, rows, out_dir=tmp_path, warmup=False, **RUN)
    assert counting.calls == 4  # the half line and the three after it
    records = lines(tmp_path / "predictions.jsonl")
    assert len(records) == 12 and keys(records) == keys([json.loads(x) for x in complete])


def test_a_complete_run_is_not_redone_and_a_longer_one_extends_it(
    pipeline, rows, complete_run, tmp_path
) -> None:
    shutil.copytree(complete_run[2], tmp_path, dirs_exist_ok=True)
    counting = CountingPipeline(pipeline)
    again = evaluate(counting, rows, out_dir=tmp_path, **RUN)
    assert counting.calls == 0 and (again.ran, again.reused) == (0, 12)
    assert again.settings == complete_run[0].settings
    longer = evaluate(counting, rows, out_dir=tmp_path, warmup=False, **{**RUN, "limit": 5})
    assert counting.calls == 3 and (longer.ran, longer.reused) == (3, 12)
    assert all(row.samples == 5 for row in longer.settings)


def test_resuming_with_other_settings_is_refused(complete_run, pipeline, rows) -> None:
    out = complete_run[2]
    with pytest.raises(EvalConfigError, match=r"max_new_tokens of the run in .*expected 2, got 3"):
        evaluate(pipeline, rows, out_dir=out, **{**RUN, "max_new_tokens": 3})
    with pytest.raises(EvalConfigError, match="metric"):
        evaluate(pipeline, rows, out_dir=out, **{**RUN, "metric": "anls"})


def test_a_corrupt_line_in_the_middle_names_its_line(tmp_path) -> None:
    (tmp_path / "predictions.jsonl").write_text(
        '{"id": "a", "budget": "full", "strategy": "full"}\nnot json\n{"id": "b"}\n'
    )
    with pytest.raises(EvalDataError, match=r"predictions\.jsonl:2: expected one JSON prediction"):
        read_predictions(tmp_path / "predictions.jsonl")


def test_loglikelihood_agrees_with_greedy_generation(pipeline, rows) -> None:
    image, question = load_image(rows[0].image), rows[0].question
    selection = SelectionOptions(strategy="hired", ratio=0.2)
    first = pipeline.run(image, question, selection).token_ids[0]
    tokenizer = pipeline.parts.processor.tokenizer
    greedy_text = tokenizer.decode([first])
    if tokenizer(greedy_text, add_special_tokens=False)["input_ids"] != [first]:
        pytest.skip("the greedy token does not survive a decode/encode round trip")
    other_id = (first + 7) % len(tokenizer)
    other_text = tokenizer.decode([other_id])
    greedy = continuation_logprob(pipeline, image, question, greedy_text, selection)
    other = continuation_logprob(pipeline, image, question, other_text, selection)
    assert greedy[1] is True and greedy[0] <= 0 and math.isfinite(greedy[0])
    if tokenizer(other_text, add_special_tokens=False)["input_ids"] == [other_id]:
        assert other[1] is False and other[0] <= greedy[0]


# --- the CLI handler --------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge-hired")
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


def test_cli_handler_writes_the_summary_and_resumes(tiny_next_dir, tmp_path, capsys) -> None:
    argv = (
        "--model",
        str(tiny_next_dir),
        "--metric",
        "exact",
        "--budgets",
        "full,0.2",
        "--strategies",
        "hired",
        "--limit",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--max-new-tokens",
        "2",
        "--no-progress",
    )
    args = parse(*argv)
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert "| full | full | 2 |" in out and "| 0.2 | hired | 2 |" in out
    assert "4 answers computed, 0 resumed" in err
    assert len(lines(tmp_path / "out" / "predictions.jsonl")) == 4
    run = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert run["model"] == str(tiny_next_dir.resolve()) and run["metric"] == "exact"
    again = parse(*argv, "--json")
    assert again.handler(again) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["samples"] == 2 and "0 answers computed, 4 resumed" in err


def test_cli_checks_the_data_before_loading_a_model(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "question": "q", "answers": ["a"]}\n', encoding="utf-8")
    args = parse("--model", str(tmp_path / "no-such-model"), "--data", str(bad))
    with pytest.raises(EvalDataError, match=r"bad\.jsonl:1: image: expected an existing file"):
        args.handler(args)


def test_cli_refuses_bad_budgets_and_strategies(capsys) -> None:
    for argv in (("--budgets", "full,1.5"), ("--strategies", "hired,full"), ("--limit", "0")):
        with pytest.raises(SystemExit) as caught:
            parse(*argv)
        assert caught.value.code == 2
    assert "expected 'full' or a ratio in (0, 1], got '1.5'" in capsys.readouterr().err


def test_cli_bundle_goes_to_the_bundle_runtime(tmp_path) -> None:
    args = parse("--bundle", str(tmp_path), "--limit", "1")
    with pytest.raises(EdgeHiredError, match=r"expected a bundle with manifest\.json"):
        args.handler(args)  # an empty directory is no bundle
    args = parse("--bundle", str(tmp_path), "--quant", "4bit")
    with pytest.raises(EdgeHiredError, match="quantization with a bundle: expected none"):
        args.handler(args)


def test_a_memory_plan_caps_every_setting_and_full_keeps_the_cap(pipeline, rows, tmp_path) -> None:
    """`eval --profile/--memory-cap` (cap_for): every setting keeps at most the planned cap;
    full, which ignores caps, runs as hired at the cap."""
    asked: list[str] = []

    def cap_for(image, prompt: str) -> int:
        asked.append(prompt)
        return 100

    evaluate(pipeline, rows, out_dir=tmp_path, **{**RUN, "limit": 1}, cap_for=cap_for)
    records = lines(tmp_path / "predictions.jsonl")
    assert [r["strategy"] for r in records] == ["full", "hired", "spatial"]
    assert all(r["visual_tokens_total"] * 0.2 >= 100 for r in records)  # the cap binds
    assert [r["visual_tokens_kept"] for r in records] == [100, 100, 100]
    assert asked[-1].startswith(rows[0].question)


def test_eval_plans_each_request_as_run_does(tiny_next_dir, pipeline, rows) -> None:
    """`eval`'s cap per (image, prompt) is the plan of that request on the target."""
    from edge_hired.cli.eval_command import plan_caps
    from edge_hired.facts.run_facts import pipeline_run_facts, run_request
    from edge_hired.planner.arithmetic import required_bytes
    from edge_hired.profiles import load_profile
    from edge_hired.runtime.model_source import ModelSource
    from edge_hired.runtime.target import TargetFlags, resolve_target
    from edge_hired.units import GIB

    source = ModelSource("model", str(tiny_next_dir))
    image, prompt = load_image(rows[0].image), rows[0].question
    roomy = resolve_target(TargetFlags(device="cpu", memory_cap_gib=64.0), source)
    assert plan_caps(pipeline, roomy, 2)(image, prompt) is None  # every token fits
    facts = pipeline_run_facts(pipeline, source, (image.height, image.width), prompt)
    request, kept = run_request(facts, 2), facts.visual_tokens - 10  # the LLM's phase leads
    tight_gib = (required_bytes(facts.inputs, load_profile("cpu"), request, kept) + 1000) / GIB
    tight = resolve_target(TargetFlags(device="cpu", memory_cap_gib=tight_gib), source)
    assert plan_caps(pipeline, tight, 2)(image, prompt) == kept
