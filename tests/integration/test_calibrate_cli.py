"""`edge-hired profile calibrate` end to end on the tiny model: a profile the planner then uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_hired.cli.main import main
from edge_hired.profiles import load_profile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_calibrate_writes_a_profile_that_plan_and_run_read_by_path(
    tiny_next_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "this-cpu.toml"
    argv = ["profile", "calibrate", "--model", str(tiny_next_dir), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--rounds", "1", "--no-progress"]) == 0
    profile = load_profile(str(out))  # the same loader `--profile FILE.toml` uses
    calibration = profile.calibration
    assert profile.name == "this-cpu" and calibration is not None
    assert 0 < calibration.runtime_gib < calibration.total_gib
    assert not list(tmp_path.glob("*.partial*")) and out.read_text().startswith("# Written by")
    capsys.readouterr()
    assert main(["plan", "--model", str(tiny_next_dir), "--profile", str(out), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["profile"] == "this-cpu" and plan["predicted_ttft_s"] > 0
    assert "calibrated" in json.dumps(plan)  # the plan says its figures are measured ones
