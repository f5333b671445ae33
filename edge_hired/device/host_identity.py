"""What machine a measurement was taken on, in one line: CPU, GPU driver, Jetson L4T, nvpmodel.

`profile calibrate` writes this next to every figure it measures, so a profile says where its
numbers come from. Each reader returns None where the file or tool does not exist.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def cpu_model(path: Path = CPUINFO) -> str | None:
    """The first 'model name' of /proc/cpuinfo."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else None


def nvidia_driver(path: Path = NVIDIA_DRIVER) -> str | None:
    """The NVIDIA kernel driver's version line, where the driver is loaded."""
    try:
        return path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def nvpmodel_mode() -> str | None:
    """`nvpmodel -q`'s power mode on a Jetson (None without the tool or when it fails)."""
    tool = shutil.which("nvpmodel")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return lines[0] if done.returncode == 0 and lines else None


def host_line(l4t: str | None = None, gpu: str | None = None) -> str:
    """'<CPU> (N cores), Linux <kernel>[, GPU ...][, L4T ...][, nvpmodel ...][, driver ...]'."""
    parts = [f"{cpu_model() or platform.processor() or '?'} ({os.cpu_count()} cores)"]
    parts.append(f"{platform.system()} {platform.release()}")
    extras = {"GPU": gpu, "L4T": l4t, "nvpmodel": nvpmodel_mode(), "driver": nvidia_driver()}
    parts += [f"{name} {value}" for name, value in extras.items() if value]
    return ", ".join(parts)
