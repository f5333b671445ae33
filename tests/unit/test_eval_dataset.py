"""Tests of evaluation JSONL files (`edge_hired.evaluation.dataset`) and of the committed
synthetic set (`edge_hired.evaluation.synthetic`, `edge_hired/data/evalset/`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_hired.errors import EdgeHiredError
from edge_hired.evaluation.dataset import (
    EvalDataError,
    EvalSample,
    default_eval_set_path,
    load_jsonl,
)
from edge_hired.evaluation.synthetic import COLOURS, write_eval_set
from edge_hired.runtime.images import load_image

GOOD = {"image": "a.png", "question": "What colour?", "answers": ["red"]}


def write(tmp_path: Path, *lines: str | dict) -> Path:
    """A JSONL file (dict lines as JSON, strings verbatim) next to an image a.png."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "set.jsonl"
    text = [json.dumps(line) if isinstance(line, dict) else line for line in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def test_reads_rows_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    absolute = dict(GOOD, image=str(tmp_path / "a.png"), id=7)
    path = write(tmp_path, dict(GOOD, id="q1", extra="ignored"), "", absolute, GOOD)
    samples = load_jsonl(path)
    assert samples[0] == EvalSample("q1", tmp_path / "a.png", "What colour?", ("red",))
    assert samples[1].id == "7" and samples[1].image == tmp_path / "a.png"
    assert samples[2].id == "4"  # no id: the line number (blank line 2 still counts)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"image": "a.png", "question": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got 'list'"),
        ({"question": "q", "answers": ["a"]}, "missing key 'image'"),
        (dict(GOOD, image=None), "image: expected a non-empty string, got None"),
        (dict(GOOD, question="  "), "question: expected a non-empty string, got '  '"),
        (dict(GOOD, answers="red"), "answers: expected a non-empty list of strings, got 'red'"),
        (dict(GOOD, answers=[]), "answers: expected a non-empty list of strings, got []"),
        (dict(GOOD, answers=["red", 2]), "answers: expected a non-empty list of strings"),
        (dict(GOOD, id=True), "id: expected a non-empty string or an integer, got True"),
        (dict(GOOD, id=None), "id: expected a non-empty string or an integer, got None"),
        (dict(GOOD, id=""), "id: expected a non-empty string or an integer, got ''"),
        (dict(GOOD, question=5), "question: expected a non-empty string, got 5"),
        (dict(GOOD, image="missing.png"), "image: expected an existing file"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, bad_line: str | dict, message: str) -> None:
    path = write(tmp_path, dict(GOOD, id="a"), dict(GOOD, id="b"), bad_line)
    with pytest.raises(EvalDataError) as caught:
        load_jsonl(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, EdgeHiredError)  # the CLI prints it on one line, exit 2


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, dict(GOOD, id="x"), dict(GOOD, id="y"), dict(GOOD, id="x"))
    with pytest.raises(EvalDataError, match=r"set\.jsonl:3: id: expected unique \(line 1"):
        load_jsonl(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="expected an existing JSONL file"):
        load_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="expected at least one sample"):
        load_jsonl(tmp_path / "empty.jsonl")


def test_image_check_can_be_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, dict(GOOD, image="later.png"))
    assert load_jsonl(path, check_images=False)[0].image == tmp_path / "later.png"


# --- the committed synthetic set --------------------------------------------------------------


def test_committed_eval_set_loads_and_every_image_exists() -> None:
    samples = load_jsonl(default_eval_set_path())
    assert len(samples) == 24
    assert len({s.id for s in samples}) == 24
    kinds = Counter(s.id.split("-")[0] for s in samples)
    assert kinds == {"number": 6, "count": 6, "colour": 6, "shape": 6}
    for sample in samples:
        assert sample.image.is_file()
        assert load_image(sample.image).size == (320, 240)


def test_committed_eval_set_is_small() -> None:
    folder = default_eval_set_path().parent
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 300 * 1024


def test_committed_eval_set_is_what_the_script_makes(tmp_path: Path) -> None:
    made = write_eval_set(tmp_path)
    committed = default_eval_set_path()
    assert made.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8")
    for sample in load_jsonl(committed):
        fresh = tmp_path / "images" / sample.image.name
        assert np.array_equal(np.asarray(load_image(fresh)), np.asarray(load_image(sample.image)))


def test_colour_questions_show_a_square_of_the_answer_colour() -> None:
    for sample in load_jsonl(default_eval_set_path()):
        if sample.question.startswith("What colour"):
            pixels = np.asarray(load_image(sample.image)).reshape(-1, 3)
            share = (pixels == COLOURS[sample.answers[0]]).all(axis=1).mean()
            assert share >= 50 * 50 / (320 * 240)  # at least a 50-pixel square of it


def test_number_questions_answer_with_digits() -> None:
    numbers = [s for s in load_jsonl(default_eval_set_path()) if s.id.startswith("number")]
    assert all(s.answers[0].isdigit() and 10 <= int(s.answers[0]) <= 999 for s in numbers)
