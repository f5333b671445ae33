"""Evaluation sets as JSONL: one question about one image per line, validated line by line.

A row reads `{"image": "images/a.png", "question": "...", "answers": ["..."], "id": "q1"}`:
`image` is relative to the JSONL file (or absolute), `answers` holds every accepted answer (10
for VQAv2-style sets), `id` is optional (default: the line number) and must be unique. Other
keys are kept out of the way (ignored). Rows are checked by a pydantic schema (`_Row`); every
error names the file, line and key: "set.jsonl:3: answers: expected ..., got ...".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic.dataclasses
from pydantic import AfterValidator, ConfigDict, Field, StrictInt, StrictStr

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.schema import expect, non_blank, validate

__all__ = [
    "DEFAULT_PROMPT_SUFFIX",
    "EvalDataError",
    "EvalSample",
    "default_eval_set_path",
    "load_jsonl",
]

EVALSET_FILE = "evalset.jsonl"
#: Appended to each question, as lmms-eval does for VQAv2, TextVQA and DocVQA ("post_prompt").
DEFAULT_PROMPT_SUFFIX = "\nAnswer the question using a single word or phrase."


class EvalDataError(InvalidArgumentError):
    """An evaluation file, or one of its lines, that is not a valid evaluation set."""


@dataclass(frozen=True)
class EvalSample:
    """One question about one image, with every answer that counts as right."""

    id: str
    image: Path
    question: str
    answers: tuple[str, ...]


def default_eval_set_path() -> Path:
    """The small synthetic set shipped in the package (made by scripts/make_eval_set.py)."""
    return Path(str(resources.files("edge_hired.data") / "evalset" / EVALSET_FILE))


def _where(path: Path, line: int) -> str:
    return f"{path}:{line}"


NonEmpty = Annotated[str, Field(strict=True), AfterValidator(non_blank)]
Answers = Annotated[tuple[StrictStr, ...], Field(min_length=1)]
RowId = Annotated[str, Field(strict=True, min_length=1)] | StrictInt


# Frozen like every schema, but other keys are ignored: sets carry their own metadata per row.
@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="ignore"))
class _Row:
    """One JSONL line as written (`id` is filled in with the line number by `parse_row`)."""

    id: Annotated[RowId, expect("a non-empty string or an integer")]
    image: Annotated[NonEmpty, expect("a non-empty string")]
    question: Annotated[NonEmpty, expect("a non-empty string")]
    answers: Annotated[Answers, expect("a non-empty list of strings")]


def _json_object(text: str, where: str) -> dict[str, Any]:
    """The line parsed as a JSON object, or EvalDataError."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        invalid = f"{where}: expected a JSON object, got invalid JSON ({error.msg})"
        raise EvalDataError(invalid) from error
    if not isinstance(row, dict):
        raise EvalDataError(expected(where, "a JSON object", type(row).__name__))
    return row


def parse_row(text: str, path: Path, line: int, check_images: bool = True) -> EvalSample:
    """One JSONL line as a sample, or EvalDataError naming `path:line`."""
    where = _where(path, line)
    row = validate(_Row, {"id": line, **_json_object(text, where)}, where, EvalDataError)
    image = path.parent / row.image
    if check_images and not image.is_file():
        raise EvalDataError(expected(f"{where}: image", "an existing file", str(image)))
    return EvalSample(id=str(row.id), image=image, question=row.question, answers=row.answers)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines of `path`."""
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        missing = expected("evaluation file", "an existing JSONL file", str(path))
        raise EvalDataError(missing) from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvalDataError(f"{path}: cannot read the evaluation file ({error})") from error
    for number, text in enumerate(content.splitlines(), start=1):
        if text.strip():
            yield number, text


def load_jsonl(path: str | Path, check_images: bool = True) -> list[EvalSample]:
    """Read and validate an evaluation JSONL file; ids must be unique, images must exist."""
    path = Path(path).expanduser()
    samples: list[EvalSample] = []
    first_line: dict[str, int] = {}
    for number, text in _lines(path):
        sample = parse_row(text, path, number, check_images)
        if sample.id in first_line:
            raise EvalDataError(
                expected(
                    f"{_where(path, number)}: id",
                    f"unique (line {first_line[sample.id]} has it)",
                    sample.id,
                )
            )
        first_line[sample.id] = number
        samples.append(sample)
    if not samples:
        raise EvalDataError(expected(str(path), "at least one sample", "an empty file"))
    return samples
