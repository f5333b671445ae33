"""The checks scripts/install.sh runs around `pip install`, with fake torch / numpy modules.

A JetPack board's torch cannot be got back from PyPI, so the install refuses a torch that
transformers would disable, and afterwards stops with one line if torch's build, CUDA or numpy's
major changed (issue 20, items 1 and 2). Each constraints file says which Python its pins need
(item 10).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from edge_hired.device import install_check
from edge_hired.device.install_check import (
    TorchSnapshot,
    board_pins,
    install_problem,
    meets_floor,
    python_refusal,
    take_snapshot,
    torch_refusal,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = sorted((REPO / "constraints").glob("*.txt"))
JETPACK_60, JETPACK_61 = "2.3.0a0+40ec155e58.nv24.02", "2.5.0a0+872d972e41.nv24.08"
VERSIONS = (JETPACK_60, JETPACK_61, "2.6.0a0+git", "2.6.0", "2.7.0a0+x", "2.8.0", "2.13.0+cpu")


def board(torch: str | None = "2.8.0", cuda=True, numpy: str | None = "1.26.4", works=True):
    return TorchSnapshot(torch, cuda, numpy, works)


def one_line(text: str | None) -> str:
    assert text is not None and "\n" not in text
    return text


@pytest.mark.parametrize("version", VERSIONS)
def test_the_floor_orders_versions_as_packaging_does(version: str) -> None:
    assert meets_floor(version) == (Version(version) >= Version("2.6.0"))


class FakeTorch(SimpleNamespace):
    """torch with a chosen version, CUDA answer and numpy interop (broken under numpy 2)."""

    def __init__(self, version: str, cuda: bool, numpy_ok: bool) -> None:
        super().__init__(__version__=version, cuda=SimpleNamespace(is_available=lambda: cuda))
        self.numpy_ok = numpy_ok

    def from_numpy(self, array):
        if not self.numpy_ok:
            raise RuntimeError("Numpy is not available")
        return SimpleNamespace(numpy=lambda: list(array))


def fake_numpy(version: str) -> SimpleNamespace:
    return SimpleNamespace(__version__=version, float32="f4", arange=lambda n, dtype: range(n))


def importer(modules: dict):
    def import_module(name: str):
        if name not in modules:
            raise ImportError(name)
        return modules[name]

    return import_module


def test_a_snapshot_reads_torch_cuda_numpy_and_their_round_trip() -> None:
    modules = {"torch": FakeTorch(JETPACK_61, True, True), "numpy": fake_numpy("1.26.4")}
    assert take_snapshot(importer(modules)) == board(JETPACK_61, True, "1.26.4", True)
    modules = {"torch": FakeTorch(JETPACK_61, True, False), "numpy": fake_numpy("2.2.6")}
    assert take_snapshot(importer(modules)) == board(JETPACK_61, True, "2.2.6", False)
    assert take_snapshot(importer({})) == board(None, False, None, False)


@pytest.mark.parametrize("version", [JETPACK_60, JETPACK_61])
def test_jetpacks_stock_torch_is_refused_with_the_route_that_works(version: str) -> None:
    message = one_line(torch_refusal(board(version)))
    assert version in message and "2.6" in message
    assert "torch==2.8.0" in message and install_check.JETSON_TORCH_INDEX in message


def test_a_final_cuda_torch_is_accepted_and_a_cpu_one_is_not() -> None:
    assert torch_refusal(board("2.8.0")) is None
    assert "does not see CUDA" in one_line(torch_refusal(board("2.8.0", cuda=False)))
    assert "no torch" in one_line(torch_refusal(board(None)))


def test_a_replaced_torch_stops_the_install() -> None:
    message = one_line(install_problem(board(JETPACK_60), board("2.14.1")))
    assert f"replaced torch {JETPACK_60} with 2.14.1" in message
    assert f"torch=={JETPACK_60}" in message


def test_numpy_2_under_a_numpy_1_torch_stops_the_install() -> None:
    after = board(numpy="2.2.6", works=False)
    message = one_line(install_problem(board(), after))
    assert "numpy 1.26.4 -> 2.2.6" in message and "numpy==1.26.4" in message
    broken = one_line(install_problem(board(), board(numpy="1.26.3", works=False)))
    assert "cannot exchange arrays" in broken


def test_lost_cuda_stops_the_install_and_an_unchanged_board_passes() -> None:
    assert "no longer sees CUDA" in one_line(install_problem(board(), board(cuda=False)))
    assert install_problem(board(), board(numpy="1.26.3")) is None


def test_the_board_pins_keep_its_torch_build_and_numpy_major() -> None:
    assert board_pins(board(JETPACK_61)) == f"torch=={JETPACK_61}\nnumpy<2\n"
    assert board_pins(board("2.8.0", numpy=None)) == "torch==2.8.0\n"


def declared_python(path: Path) -> tuple[int, int]:
    found = re.search(r"^#\s*python\s*>=\s*(\d+)\.(\d+)", path.read_text(), re.MULTILINE)
    assert found, f"{path.name} does not say which Python its pins need"
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize("path", CONSTRAINTS, ids=lambda p: p.name)
def test_every_constraints_file_says_its_python_and_refuses_an_older_one(path: Path) -> None:
    major, minor = declared_python(path)
    assert python_refusal((major, minor, 0), path) is None
    message = one_line(python_refusal((major, minor - 1, 9), path))
    assert (
        f"Python >= {major}.{minor}" in message and f"this is Python {major}.{minor - 1}" in message
    )


def test_the_cpu_pins_need_3_11_and_the_project_still_installs_on_jetpack_6s_3_10() -> None:
    assert declared_python(REPO / "constraints/cpu.txt") == (3, 11)
    assert declared_python(REPO / "constraints/jetson.txt") == (3, 10)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lowest = min(declared_python(path) for path in CONSTRAINTS)
    assert SpecifierSet(project["requires-python"]).contains("{}.{}".format(*lowest))


def test_the_command_line_prints_one_line_and_exits_1(capsys: pytest.CaptureFixture) -> None:
    assert install_check.main(["python", str(REPO / "constraints/jetson.txt")]) == 0
    assert install_check.main(["nonsense"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
