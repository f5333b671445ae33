"""Which Jetson this is, from the files L4T leaves behind, mapped to a device profile.

The device tree names the board (/proc/device-tree/model, e.g. "NVIDIA Jetson Orin Nano
Developer Kit") and lists the module's part number in /proc/device-tree/compatible (e.g.
"nvidia,p3768-0000+p3767-0005"); /etc/nv_tegra_release gives the L4T release. Part numbers are
exact; model names leave the memory size open, which MemTotal then settles. The tables are data;
every reader takes its path so tests run on hand-made files in the same format, as jtop does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge_hired.device.memory_info import MEMINFO, MemoryInfoError, read_meminfo
from edge_hired.units import GIB

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
DEVICE_TREE_COMPATIBLE = Path("/proc/device-tree/compatible")
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")

#: Module part number -> profile (NVIDIA module numbering, as jtop's module table lists them).
PART_NUMBERS: dict[str, str | None] = {
    "p3767-0005": "orin-nano-8gb",  # Orin Nano developer kit module (8GB)
    "p3767-0004": "orin-nano-4gb",
    "p3767-0003": "orin-nano-8gb",
    "p3767-0001": "orin-nx-8gb",
    "p3767-0000": "orin-nx-16gb",
    "p3701-0005": "agx-orin-64gb",
    "p3701-0004": "agx-orin-32gb",
    "p3701-0000": "agx-orin-32gb",  # the first AGX Orin developer kit carried 32 GB
    # Xavier NX (P3668): JetPack 5 at most, whose torch transformers 5.20+ refuses: no profile
    # (docs/support-matrix.md).
    "p3668-0000": None,
    "p3668-0001": None,
    "p3668-0003": None,
}

#: Words of the device-tree model name -> candidate profiles, told apart by memory size (GiB).
MODEL_NAMES: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("AGX Thor", (("agx-thor-128gb", 128),)),
    ("AGX Orin", (("agx-orin-32gb", 32), ("agx-orin-64gb", 64))),
    ("Orin NX", (("orin-nx-8gb", 8), ("orin-nx-16gb", 16))),
    ("Orin Nano", (("orin-nano-4gb", 4), ("orin-nano-8gb", 8))),
)

_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


@dataclass(frozen=True)
class JetsonInfo:
    """What the files say: board name, module part, L4T release, and the matching profile."""

    model: str | None
    part: str | None
    l4t: str | None
    profile: str | None
    reason: str

    @property
    def is_jetson(self) -> bool:
        """Whether the files show a Jetson (`jetson_reason`'s rule)."""
        return self.l4t is not None or _names_a_jetson(self.model)


def read_text(path: Path) -> str | None:
    """A device file's text without NULs, or None when it does not exist."""
    try:
        return Path(path).read_bytes().replace(b"\0", b"\n").decode("utf-8", "replace").strip()
    except OSError:
        return None


def jetson_reason(model: str | None, release: str | None) -> str | None:
    """The one rule for "this is a Jetson", with its evidence, or None.

    L4T's release file is proof; without it, a device-tree model that names a Jetson is (other
    ARM boards have a device tree too, so its mere presence proves nothing).
    """
    if release is not None:
        return f"{NV_TEGRA_RELEASE}: {release.partition(chr(10))[0].strip()[:60]}"
    if _names_a_jetson(model):
        return f"{DEVICE_TREE_MODEL}: {model}"
    return None


def jetson_evidence(root: Path = Path("/")) -> str | None:
    """`jetson_reason` for the machine whose filesystem starts at `root` (tests pass a tmp dir)."""
    model = read_text(root / DEVICE_TREE_MODEL.relative_to("/"))
    return jetson_reason(model, read_text(root / NV_TEGRA_RELEASE.relative_to("/")))


def looks_like_jetson() -> bool:
    """Whether this machine is a Jetson (`jetson_reason`'s rule)."""
    return jetson_evidence() is not None


def _names_a_jetson(model: str | None) -> bool:
    return model is not None and "jetson" in model.lower()


def parse_l4t_release(text: str) -> str | None:
    """'36.4.3' from '# R36 (release), REVISION: 4.3, GCID: ...'."""
    match = _RELEASE.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def part_number(compatible: str) -> str | None:
    """The first known module part number in a device-tree compatible list."""
    for part in re.findall(r"p\d{4}-\d{4}", compatible):
        if part in PART_NUMBERS:
            return part
    return None


def profile_for_model(model: str, memtotal_bytes: int | None) -> str | None:
    """Profile for a model name, the smallest candidate whose memory holds MemTotal."""
    for words, candidates in MODEL_NAMES:
        if words.lower() in model.lower():
            if memtotal_bytes is None:
                return candidates[0][0]
            for name, nominal_gib in candidates:
                if memtotal_bytes <= nominal_gib * GIB:
                    return name
            return candidates[-1][0]
    return None


def detect_jetson(
    model_path: Path = DEVICE_TREE_MODEL,
    compatible_path: Path = DEVICE_TREE_COMPATIBLE,
    release_path: Path = NV_TEGRA_RELEASE,
    meminfo_path: Path = MEMINFO,
) -> JetsonInfo:
    """Name the Jetson from its device files; `profile` is None when none matches."""
    model = read_text(model_path)
    release = read_text(release_path)
    l4t = parse_l4t_release(release) if release else None
    part = part_number(read_text(compatible_path) or "")
    if jetson_reason(model, release) is None:
        why = f"not a Jetson: no {release_path}, and {model_path} names no Jetson"
        return JetsonInfo(None, None, None, None, why)
    if part is not None:
        profile = PART_NUMBERS[part]
        return JetsonInfo(model, part, l4t, profile, f"module part number {part}")
    profile = profile_for_model(model or "", _memtotal(meminfo_path))
    why = f"model name {model!r} and MemTotal" if profile else f"no profile for {model!r}"
    return JetsonInfo(model, None, l4t, profile, why)


def _memtotal(path: Path) -> int | None:
    try:
        return read_meminfo(path).get("MemTotal")
    except MemoryInfoError:
        return None
