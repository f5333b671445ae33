"""A Jetson install keeps JetPack's torch and explains the bitsandbytes wheel that cannot work."""

from __future__ import annotations

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
#: torch versions JetPack ships (NVIDIA's Jetson wheels), and a plain release.
JETPACK_TORCH = ("2.3.0a0+40ec155e58.nv24.03", "2.5.0a0+872d972e41.nv24.08", "2.3.0", "2.13.0")


def _torch_requirement() -> Requirement:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return next(Requirement(d) for d in project["dependencies"] if d.startswith("torch"))


@pytest.mark.parametrize("version", JETPACK_TORCH)
def test_the_torch_requirement_accepts_jetpacks_prerelease_builds(version: str) -> None:
    assert _torch_requirement().specifier.contains(version)


def test_the_torch_requirement_still_refuses_older_torch() -> None:
    assert not _torch_requirement().specifier.contains("2.2.2")


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
