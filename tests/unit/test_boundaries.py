"""`scripts/check_boundaries.py`: no `.parts` reached outside runtime/, the device chosen once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_boundaries.py"
PACKAGE = ROOT / "edge_hired"


def load_script():
    spec = importlib.util.spec_from_file_location("check_boundaries", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_finds_planted_crossings(tmp_path: Path) -> None:
    script = load_script()
    planted = tmp_path / "edge_hired" / "serve" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        "from edge_hired.device import torch_device\n"
        "def f(pipeline, path):\n"
        "    path.relative_to(path).parts\n"  # a Path's parts: not a pipeline's
        "    torch_device.choose_torch_device('auto')\n"
        "    return pipeline.parts.llm\n"
    )
    inside = tmp_path / "edge_hired" / "runtime" / "target.py"
    inside.parent.mkdir(parents=True)
    inside.write_text("def g(p):\n    choose_torch_device()\n    return p.parts\n")
    found = script.crossings([tmp_path])
    assert found == {"parts": [f"{planted}:5"], "chooser": [f"{planted}:4"]}


def test_no_parts_reached_from_outside_the_runtime() -> None:
    """Callers read the pipeline's accessors (tokenizer, facts, encode, model, ...)."""
    assert load_script().crossings([PACKAGE, ROOT / "scripts"])["parts"] == []


def test_the_device_chooser_is_called_by_the_target_builder_alone() -> None:
    found = load_script().crossings([PACKAGE, ROOT / "scripts", ROOT / "tests"])
    assert found["chooser"] == []
