"""Checks around `pip install` on a machine whose torch must survive it (JetPack, CUDA images).

A Jetson's torch is NVIDIA's build for its JetPack: pip cannot get it back from PyPI, and PyPI's
aarch64 torch has no L4T CUDA. So `scripts/install.sh` snapshots torch before installing, refuses
a torch the pinned transformers would disable, pins the board's exact build, and after installing
compares a second snapshot with the first. Each problem is ONE line saying what changed and how
to fix it (the script prints it and stops).

Standard library only: it runs with the board's Python before edge-hired's dependencies exist.
The imports are parameters, so tests use fake `torch` / `numpy` modules.

    python -m edge_hired.device.install_check python CONSTRAINTS
    python -m edge_hired.device.install_check before SNAPSHOT.json PIN.txt
    python -m edge_hired.device.install_check after SNAPSHOT.json
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

#: The oldest torch that `transformers.utils.is_torch_available()` accepts in every transformers
#: the constraints allow: 5.20 (what Python 3.10 resolves) requires torch >= 2.6 (a FINAL 2.6:
#: JetPack's pre-releases 2.3.0a0 / 2.5.0a0 sort below their releases and are refused).
TORCH_FLOOR = (2, 6, 0)
#: Where final torch builds for JetPack 6.1/6.2 (CUDA 12.6) come from.
JETSON_TORCH_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?((?:a|b|rc|\.dev)\d*)?")
_PYTHON_HEADER = re.compile(r"^#\s*python\s*>=\s*(\d+)\.(\d+)", re.MULTILINE)

Importer = Callable[[str], ModuleType]


class InstallCheckError(Exception):
    """One line: what the install changed or cannot accept, and how to fix it."""


@dataclass(frozen=True)
class TorchSnapshot:
    """What torch and numpy look like at one moment of the install."""

    torch_version: str | None
    cuda_available: bool
    numpy_version: str | None
    numpy_works: bool


def release(version: str) -> tuple[tuple[int, int, int], bool]:
    """(major, minor, patch) and whether it is a pre-release ('2.5.0a0+...' -> (2, 5, 0), True)."""
    found = _VERSION.match(version)
    if found is None:
        raise InstallCheckError(f"cannot read the version {version!r}")
    major, minor, patch, pre = found.groups()
    return (int(major), int(minor), int(patch or 0)), pre is not None


def meets_floor(version: str, floor: tuple[int, int, int] = TORCH_FLOOR) -> bool:
    """True when `version` >= the final release `floor`, as packaging orders them."""
    numbers, pre = release(version)
    return numbers > floor or (numbers == floor and not pre)


def take_snapshot(import_module: Importer = importlib.import_module) -> TorchSnapshot:
    """torch's version string, CUDA, numpy's version and a torch <-> numpy round trip."""
    torch = _try_import(import_module, "torch")
    numpy = _try_import(import_module, "numpy")
    return TorchSnapshot(
        torch_version=str(torch.__version__) if torch else None,
        cuda_available=bool(torch and torch.cuda.is_available()),
        numpy_version=str(numpy.__version__) if numpy else None,
        numpy_works=bool(torch and numpy and _round_trip(torch, numpy)),
    )


def _try_import(import_module: Importer, name: str) -> ModuleType | None:
    try:
        return import_module(name)
    except ImportError:
        return None


def _round_trip(torch: ModuleType, numpy: ModuleType) -> bool:
    """A torch built against numpy 1 under numpy 2 fails here ("Numpy is not available")."""
    try:
        values = torch.from_numpy(numpy.arange(3, dtype=numpy.float32)).numpy()
        return [float(v) for v in values] == [0.0, 1.0, 2.0]
    except Exception:  # any failure is the answer: the two do not work together
        return False


def torch_refusal(snapshot: TorchSnapshot) -> str | None:
    """Why this torch cannot carry edge-hired (and must not be replaced by pip), or None."""
    version = snapshot.torch_version
    get = f"pip install torch==2.8.0 --index-url {JETSON_TORCH_INDEX}"
    if version is None:
        return f"this Python sees no torch: install the board's CUDA torch first ({get})"
    if not meets_floor(version):
        return (
            f"torch {version} is below 2.6, so transformers 5.20+ would disable it; JetPack "
            f"6.0-6.2's stock 2.3.0a0/2.5.0a0 cannot run edge-hired: on JetPack 6.1/6.2 {get}"
            " (JetPack 6.0: flash 6.2 first)"
        )
    if not snapshot.cuda_available:
        return f"torch {version} does not see CUDA: install NVIDIA's CUDA build ({get})"
    return None


def install_problem(before: TorchSnapshot, after: TorchSnapshot) -> str | None:
    """What the install broke, comparing the snapshots taken around it, or None."""
    was, now = before.torch_version, after.torch_version
    if now != was:
        return (
            f"the install replaced torch {was} with {now}: reinstall the board's build "
            f"(pip install --force-reinstall --no-deps torch=={was} --index-url "
            f"{JETSON_TORCH_INDEX}) and report which package asked for another torch"
        )
    if before.cuda_available and not after.cuda_available:
        return f"torch {now} no longer sees CUDA after the install: reinstall the board's torch"
    if _major(before.numpy_version) != _major(after.numpy_version):
        return (
            f"the install changed numpy {before.numpy_version} -> {after.numpy_version} under "
            f"torch {now}, which was built for numpy {_major(before.numpy_version)}.x: "
            f"pip install 'numpy=={before.numpy_version}'"
        )
    if before.numpy_works and not after.numpy_works:
        numpy = after.numpy_version
        return f"torch {now} cannot exchange arrays with numpy {numpy}: pip install 'numpy<2'"
    return None


def _major(version: str | None) -> int | None:
    return None if version is None else int(version.split(".")[0])


def board_pins(snapshot: TorchSnapshot) -> str:
    """Constraints that keep the board's exact torch build and numpy major through `pip install`."""
    lines = [f"torch=={snapshot.torch_version}"]
    if snapshot.numpy_version is not None:
        lines.append(f"numpy<{_major(snapshot.numpy_version) + 1}")
    return "\n".join(lines) + "\n"


def python_refusal(version: Sequence[int], constraints: Path) -> str | None:
    """Why this Python cannot install the pins of `constraints` (its '# python >= X.Y' line)."""
    declared = _PYTHON_HEADER.search(constraints.read_text())
    if declared is None:
        return f"{constraints} does not say which Python its pins are for ('# python >= X.Y')"
    needed = (int(declared.group(1)), int(declared.group(2)))
    if tuple(version[:2]) >= needed:
        return None
    have = ".".join(str(part) for part in version[:2])
    return (
        f"{constraints} pins wheels for Python >= {needed[0]}.{needed[1]}, this is Python {have}: "
        f"make the venv with a newer Python (PYTHON=python{needed[0]}.{needed[1]}); a JetPack 6 "
        "board (Python 3.10) uses EDGE_HIRED_TARGET=jetson"
    )


def _before(snapshot_file: str, pin_file: str) -> str | None:
    snapshot = take_snapshot()
    problem = torch_refusal(snapshot)
    if problem is None:
        Path(snapshot_file).write_text(json.dumps(asdict(snapshot)))
        Path(pin_file).write_text(board_pins(snapshot))
    return problem


def _after(snapshot_file: str) -> str | None:
    before = TorchSnapshot(**json.loads(Path(snapshot_file).read_text()))
    return install_problem(before, take_snapshot())


def main(argv: Sequence[str]) -> int:
    """Run one check; print its problem on one line and return 1, or return 0."""
    command, *paths = argv
    checks = {
        "python": lambda: python_refusal(sys.version_info, Path(paths[0])),
        "before": lambda: _before(*paths),
        "after": lambda: _after(*paths),
    }
    check = checks.get(command, lambda: f"unknown check {command!r} (expected {', '.join(checks)})")
    try:
        problem = check()
    except InstallCheckError as error:
        problem = str(error)
    if problem:
        print(f"edge-hired install: {problem}", file=sys.stderr)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
