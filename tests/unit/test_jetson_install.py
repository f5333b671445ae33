"""A Jetson install keeps the board's torch, accepts only torches transformers will use, and
explains the bitsandbytes wheel that cannot work.

The support matrix (docs/support-matrix.md) accepts final torch >= 2.6: transformers 5.20+ (the
lowest the constraints allow, what a Python 3.10 JetPack 6 board resolves) disables anything older,
JetPack 6.0-6.2's stock pre-releases 2.3.0a0 / 2.5.0a0 included (issue 20, item 1).
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from edge_hired.device.bitsandbytes_check import BackendUnavailableError, require_bitsandbytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
#: JetPack's stock torch builds (6.0, 6.1/6.2): transformers 5.20+ disables them.
JETPACK_STOCK = ("2.3.0a0+40ec155e58.nv24.02", "2.5.0a0+872d972e41.nv24.08", "2.5.0")
#: Torches the matrix accepts: final builds of NVIDIA's jp6/cu126 index, the CPU/CUDA wheels.
ACCEPTED = ("2.6.0", "2.7.0", "2.8.0", "2.13.0", "2.13.0+cpu")


def _requirement(name: str) -> Requirement:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == name)


def _pin(constraints: str, name: str) -> str:
    lines = (REPO / "constraints" / constraints).read_text().splitlines()
    return next(line.split("==")[1] for line in lines if line.startswith(f"{name}=="))


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_torch_requirement_accepts_the_matrixs_torches(version: str) -> None:
    assert _requirement("torch").specifier.contains(version)


@pytest.mark.parametrize("version", JETPACK_STOCK)
def test_the_torch_requirement_refuses_jetpacks_stock_builds(version: str) -> None:
    # With install.sh's pin of the board's build, pip then fails instead of replacing it.
    assert not _requirement("torch").specifier.contains(version, prereleases=True)


def test_the_lowest_transformers_is_the_jetson_one_and_the_projects_floor() -> None:
    lowest = _pin("lowest.txt", "transformers")
    assert lowest == _pin("jetson.txt", "transformers")
    allowed = _requirement("transformers").specifier
    assert allowed.contains(lowest) and not allowed.contains(f"{lowest.rsplit('.', 2)[0]}.19.0")


def _torch_available_with(version: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """transformers' own check, with importlib.metadata reporting `version` for torch."""
    from transformers.utils import import_utils

    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: version if name == "torch" else real(name)
    )
    check = import_utils.is_torch_available
    getattr(check, "cache_clear", lambda: None)()
    try:
        return check()
    finally:
        getattr(check, "cache_clear", lambda: None)()


@pytest.mark.parametrize("version", ACCEPTED)
def test_transformers_uses_every_torch_the_matrix_accepts(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make test-lowest` runs this on constraints/lowest.txt's transformers (= jetson.txt's).
    assert _torch_available_with(version, monkeypatch)


@pytest.mark.parametrize("version", JETPACK_STOCK)
def test_transformers_disables_jetpacks_stock_torch(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not _torch_available_with(version, monkeypatch)


def test_the_jetson_install_pins_the_board_and_checks_before_and_after() -> None:
    script = (REPO / "scripts/install.sh").read_text()
    jetson = script[script.index("  jetson)\n    work=") :]
    before = jetson.index('"${check[@]}" before "$work/before.json" "$work/board.txt"')
    install = jetson.index('"${pip[@]}" -c "$work/board.txt" -e \'.[jetson,dev]\'')
    after = jetson.index('"${check[@]}" after "$work/before.json"')
    assert before < install < after
    assert "constraints/jetson.txt" in script and "set -euo pipefail" in script


def test_missing_kernels_get_the_sm87_build_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_kernel(bnb, quantization, device):
        raise RuntimeError("Error invalid device function\nCUDA error: named symbol not found")

    with pytest.raises(BackendUnavailableError) as caught:
        require_bitsandbytes(
            "4bit", torch.device("cpu"), importer=lambda: sys, smoke=broken_kernel, jetson=False
        )
    message = str(caught.value)
    assert "named symbol not found" in message and "\n" not in message
    assert "-DCOMPUTE_CAPABILITY=87" in message and "JETSON_PIP_INDEX" in message


def test_the_jetson_install_takes_bitsandbytes_from_the_jetson_index() -> None:
    script = (REPO / "scripts/install.sh").read_text()
    assert '--index-url "$JETSON_PIP_INDEX" bitsandbytes' in script
    assert "-DCOMPUTE_CAPABILITY=87" in script
