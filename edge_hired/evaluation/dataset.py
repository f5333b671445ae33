"""Evaluation sets as JSONL: one question about one image per line, validated line by line.

A row reads `{"image": "images/a.png", "question": "...", "answers": ["..."], "id": "q1"}`:
`image` is relative to the JSONL file (or absolute), `answers` holds every accepted answer (10
for VQAv2-style sets), `id` is optional (default: the line number) and must be unique. Other
keys are kept out of the way (ignored). Every error names the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge_hired.errors import InvalidArgumentError, expected

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


def _text_field(row: dict[str, Any], key: str, where: str) -> str:
    """A required non-empty string field."""
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise EvalDataError(expected(f"{where}: '{key}'", "a non-empty string", value))
    return value


def _answers_field(row: dict[str, Any], where: str) -> tuple[str, ...]:
    """A non-empty list of strings."""
    value = row.get("answers")
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise EvalDataError(expected(f"{where}: 'answers'", "a non-empty list of strings", value))
    return tuple(value)


def _id_field(row: dict[str, Any], line: int, where: str) -> str:
    """The row's id as text; the line number when absent."""
    value = row.get("id", line)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise EvalDataError(expected(f"{where}: 'id'", "a non-empty string or an integer", value))
    return str(value)


def _image_field(row: dict[str, Any], base: Path, where: str, check: bool) -> Path:
    """The image path, resolved against the JSONL file's folder; it must exist if `check`."""
    image = base / _text_field(row, "image", where)
    if check and not image.is_file():
        raise EvalDataError(expected(f"{where}: image", "an existing file", str(image)))
    return image


def parse_row(text: str, path: Path, line: int, check_images: bool = True) -> EvalSample:
    """One JSONL line as a sample, or EvalDataError naming `path:line`."""
    where = _where(path, line)
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        invalid = f"{where}: expected a JSON object, got invalid JSON ({error.msg})"
        raise EvalDataError(invalid) from error
    if not isinstance(row, dict):
        raise EvalDataError(expected(where, "a JSON object", type(row).__name__))
    return EvalSample(
        id=_id_field(row, line, where),
        image=_image_field(row, path.parent, where, check_images),
        question=_text_field(row, "question", where),
        answers=_answers_field(row, where),
    )


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
                    f"{_where(path, number)}: 'id'",
                    f"unique (line {first_line[sample.id]} has it)",
                    sample.id,
                )
            )
        first_line[sample.id] = number
        samples.append(sample)
    if not samples:
        raise EvalDataError(expected(str(path), "at least one sample", "an empty file"))
    return samples
