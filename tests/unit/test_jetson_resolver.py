"""What pip does on a JetPack 6 board, resolved here: Python 3.10, aarch64 wheels, the board's
torch and numpy faked as installed distributions (issue 20, items 1 and 2).

For each torch JetPack ships, a throwaway Python 3.10 venv gets fake `torch` / `numpy` dist-info
(and tiny importable stand-ins for install_check's snapshot), then runs what scripts/install.sh
runs: `install_check before`, and `pip install --dry-run --report` of `-e .[jetson,dev]` with
constraints/jetson.txt plus the board pin it wrote, resolving for manylinux aarch64. The stock
pre-release torches are refused before pip runs, and pip given their pin fails instead of
replacing them; the final torch 2.8.0 (NVIDIA's jp6/cu126) is kept with numpy 1.

Needs the package registry (PyPI) and a Python 3.10 (EDGE_HIRED_PYTHON310, `python3.10` or
pyenv's 3.10.13). Caches nothing outside the test's tmp directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_hired.device.install_check import TorchSnapshot, board_pins

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PYENV_310 = Path("/root/.pyenv/versions/3.10.13/bin/python")
STOCK = {"6.0": "2.3.0a0+40ec155e58.nv24.02", "6.1-6.2": "2.5.0a0+872d972e41.nv24.08"}
FINAL = "2.8.0"  # a final build for JetPack 6.1/6.2 from NVIDIA's Jetson AI Lab index (jp6/cu126)
NUMPY = "1.26.4"  # the numpy JetPack's torch wheels are used with
#: glibc 2.35 (Ubuntu 22.04, JetPack 6) accepts every manylinux tag down to 2.17.
PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(35, 16, -1)]
FAKE_TORCH = """__version__ = {version!r}

class cuda:
    @staticmethod
    def is_available():
        return True

class _Tensor:
    def __init__(self, values):
        self.values = values

    def numpy(self):
        return list(self.values)

def from_numpy(values):
    return _Tensor(values)
"""
FAKE_NUMPY = """__version__ = {version!r}
float32 = "float32"

def arange(n, dtype=None):
    return [float(i) for i in range(n)]
"""


def python310() -> str:
    """The first Python 3.10 that runs: EDGE_HIRED_PYTHON310, pyenv's 3.10.13, `python3.10`."""
    candidates = (os.environ.get("EDGE_HIRED_PYTHON310"), str(PYENV_310), "python3.10")
    for candidate in filter(None, candidates):
        found = shutil.which(candidate)
        probe = "import sys; sys.exit(sys.version_info[:2] != (3, 10))"
        if found and subprocess.run([found, "-c", probe], capture_output=True).returncode == 0:
            return found
    pytest.skip("no Python 3.10 here (set EDGE_HIRED_PYTHON310)")


def run(*command: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], cwd=REPO, capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def pip_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Environment for pip: its cache under tmp, no user config beyond the machine's."""
    cache = tmp_path_factory.mktemp("pip-cache")
    return {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, pip_env: dict) -> Path:
    """A Python 3.10 venv with a pip new enough for `--dry-run --platform` and `--python`."""
    venv = tmp_path_factory.mktemp("runner")
    assert run(python310(), "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    upgraded = run(python, "-m", "pip", "install", "-q", "pip>=24.1", env=pip_env)
    assert upgraded.returncode == 0, upgraded.stderr
    return python


def board(tmp_path: Path, torch_version: str) -> Path:
    """A Python 3.10 venv that has JetPack's torch and numpy, as pip and a snapshot see them."""
    venv = tmp_path / "board"
    assert run(python310(), "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    for name, version, module in (
        ("torch", torch_version, FAKE_TORCH),
        ("numpy", NUMPY, FAKE_NUMPY),
    ):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(module.format(version=version))
    return python


def check_before(python: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """install.sh's first step: refuse or pin the board's torch (edge_hired from this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return run(
        python,
        "-m",
        "edge_hired.device.install_check",
        "before",
        tmp_path / "before.json",
        tmp_path / "board.txt",
        env=env,
    )


def resolve(runner: Path, board_python: Path, pins: Path, pip_env: dict, report: Path):
    """install.sh's pip install of the Jetson extra, as a dry run resolved for the board."""
    platforms = [option for tag in PLATFORMS for option in ("--platform", tag)]
    return run(
        runner,
        "-m",
        "pip",
        "--python",
        board_python,
        "install",
        "--dry-run",
        "--report",
        report,
        *platforms,
        "--python-version",
        "3.10",
        "--only-binary=:all:",
        "-c",
        "constraints/jetson.txt",
        "-c",
        pins,
        "-e",
        ".[jetson,dev]",
        env=pip_env,
    )


@pytest.mark.parametrize("jetpack", sorted(STOCK))
def test_jetpacks_stock_torch_is_refused_and_pip_cannot_replace_it(
    jetpack: str, runner: Path, pip_env: dict, tmp_path: Path
) -> None:
    version = STOCK[jetpack]
    python = board(tmp_path, version)
    refused = check_before(python, tmp_path)
    assert refused.returncode == 1 and not (tmp_path / "board.txt").exists()
    assert refused.stderr.count("\n") == 1 and f"torch {version} is below 2.6" in refused.stderr
    # Even past the script's refusal, the board pin makes pip fail rather than swap torch.
    pins = tmp_path / "pins.txt"
    pins.write_text(board_pins(TorchSnapshot(version, True, NUMPY, True)))
    result = resolve(runner, python, pins, pip_env, tmp_path / "report.json")
    assert result.returncode != 0 and not (tmp_path / "report.json").exists()
    assert "torch" in result.stderr and "conflict" in result.stderr.lower()


def test_a_final_jp6_torch_and_its_numpy_1_are_kept(
    runner: Path, pip_env: dict, tmp_path: Path
) -> None:
    python = board(tmp_path, FINAL)
    assert check_before(python, tmp_path).returncode == 0
    assert (tmp_path / "board.txt").read_text() == f"torch=={FINAL}\nnumpy<2\n"
    report = tmp_path / "report.json"
    result = resolve(runner, python, tmp_path / "board.txt", pip_env, report)
    assert result.returncode == 0, result.stderr[-2000:]
    installs = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "torch" not in installs and "numpy" not in installs  # the board's builds stay
    cuda_wheels = [name for name in installs if name.startswith(("nvidia-cu", "cuda-", "triton"))]
    assert not cuda_wheels  # (jetson-stats' nvidia-ml-py is NVML's Python binding, no CUDA)
    assert installs["transformers"] == "5.20.2" and installs["ml-dtypes"] == "0.5.4"
    assert installs["bitsandbytes"] == "0.49.2"
