"""The files of an evaluation run: predictions appended line by line, and the run's settings.

`predictions.jsonl` is written one flushed, fsynced line per answer so that a run stopped at any
moment loses at most the answer being written; `read_predictions` drops such a half-written
last line. `run.json` holds what the answers depend on; `check_run` refuses to mix runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.evaluation.dataset import EvalDataError

__all__ = [
    "PREDICTIONS_FILE",
    "RUN_FILE",
    "RUN_KEYS",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "EvalConfigError",
    "Key",
    "append_line",
    "check_run",
    "read_predictions",
    "write_atomically",
]

PREDICTIONS_FILE, SUMMARY_JSON, SUMMARY_MD, RUN_FILE = (
    "predictions.jsonl",
    "summary.json",
    "summary.md",
    "run.json",
)
RUN_KEYS = ("metric", "prompt_suffix", "max_new_tokens", "model")

Key = tuple[str, str, str]  # (sample id, budget label, strategy)


class EvalConfigError(InvalidArgumentError):
    """An output directory that holds a run made with other settings."""


def _record_key(record: Mapping[str, Any], where: str) -> Key:
    try:
        return str(record["id"]), str(record["budget"]), str(record["strategy"])
    except (KeyError, TypeError):
        raise EvalDataError(
            expected(where, "a prediction with id, budget and strategy", record)
        ) from None


def _drop_partial_line(path: Path) -> bytes:
    """The file's complete lines; a last line without its newline (a killed write) is cut off."""
    raw = path.read_bytes()
    tail = raw.rpartition(b"\n")[2]
    if tail:
        with path.open("r+b") as handle:
            handle.truncate(len(raw) - len(tail))
    return raw[: len(raw) - len(tail)]


def read_predictions(path: Path) -> dict[Key, dict[str, Any]]:
    """Predictions already written, by (id, budget, strategy); the first of duplicates wins."""
    if not path.exists():
        return {}
    records: dict[Key, dict[str, Any]] = {}
    for number, line in enumerate(_drop_partial_line(path).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise EvalDataError(
                f"{path}:{number}: expected one JSON prediction, got invalid "
                "JSON; delete that line to have it redone"
            ) from None
        records.setdefault(_record_key(record, f"{path}:{number}"), record)
    return records


def check_run(out_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to resume a run made with other settings; record the settings of a new one."""
    path = out_dir / RUN_FILE
    if not path.exists():
        write_atomically(path, json.dumps(config, indent=2) + "\n")
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        unreadable = f"{path}: cannot read the settings of the earlier run ({error})"
        raise EvalConfigError(unreadable) from error
    for key in RUN_KEYS:
        old, new = previous.get(key), config[key]
        if key == "model" and (old is None or new is None):
            continue
        if old != new:
            raise EvalConfigError(
                expected(f"{key} of the run in {out_dir}", repr(old), new)
                + "; choose another output directory for a new run"
            )


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def append_line(sink: Any, record: dict[str, Any]) -> None:
    """One JSON line, on disk before the next answer starts."""
    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    sink.flush()
    os.fsync(sink.fileno())
