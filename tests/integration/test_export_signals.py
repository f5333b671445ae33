"""SIGTERM in the middle of `export` leaves nothing behind; stale partials go at the next export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_hired.export.exporter import remove_stale_partials

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: An export whose stages are replaced by one that stages a file and then waits to be stopped.
SLOW_EXPORT = """
import sys, time
from edge_hired.export import exporter

def stage_then_wait(model_id, staging, options, say):
    (staging / "llm.safetensors").write_bytes(b"0" * 4096)
    print("staged", flush=True)
    time.sleep(120)

exporter._write_bundle = stage_then_wait
from edge_hired.cli.main import main
sys.exit(main(["export", "some/model", "--out", sys.argv[1], "--quant", "none", "--json"]))
"""


def test_sigterm_during_export_removes_the_partial_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "bundles" / "tiny"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout.readline().strip() == "staged"
        assert len(list(out.parent.glob(".tiny.partial-*"))) == 1
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143
    assert err.strip().splitlines()[-1] == "edge-hired: terminated"
    assert list(out.parent.iterdir()) == []


def test_stale_partials_of_the_same_output_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    stale = [tmp_path / f".tiny.partial-{dead}-abc", tmp_path / ".tiny.partial-k2j4x"]
    live = tmp_path / f".tiny.partial-{os.getpid()}-xyz"
    other = tmp_path / f".other.partial-{dead}-abc"
    for path in (*stale, live, other):
        path.mkdir()
    assert sorted(remove_stale_partials(out)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
