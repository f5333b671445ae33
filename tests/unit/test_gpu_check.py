"""scripts/gpu_check.py: exit 2 with one line without CUDA; a failing section is a row."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def test_without_cuda_it_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA GPU visible to torch; this check needs an NVIDIA GPU"
    ]
    assert not (tmp_path / "x.json").exists()


def test_a_failing_section_becomes_a_row() -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows: list[dict] = []

    def broken() -> list[dict]:
        raise RuntimeError("CUDA error: out of memory")

    module.section(rows, "7b", broken)
    assert rows[0]["ok"] is False and rows[0]["section"] == "7b"
    assert rows[0]["detail"] == "RuntimeError: CUDA error: out of memory"
    assert "NO" in module.table(rows)
