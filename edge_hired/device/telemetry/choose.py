"""Pick the telemetry backend once, with the reason the user sees.

`auto` tries jtop (only on a Jetson), then NVML (a driver and a GPU), then psutil, which always
works. An explicit choice that cannot be honoured falls back along the same order, and the reason
says why. Tests point `root` at a directory of hand-made device files and inject fake clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_hired.device.jetson import jetson_evidence
from edge_hired.device.telemetry.base import Sampler, TelemetryUnavailable
from edge_hired.device.telemetry.jtop_backend import JtopSampler, connect_jtop
from edge_hired.device.telemetry.nvml_backend import NvmlSampler
from edge_hired.device.telemetry.psutil_backend import PsutilSampler
from edge_hired.errors import InvalidArgumentError, expected

BACKENDS = ("jtop", "nvml", "psutil")
CHOICES = ("auto", *BACKENDS)


@dataclass(frozen=True)
class Probes:
    """Where the chooser looks, and what it calls: real defaults, fakes in tests."""

    root: Path = Path("/")
    jtop_factory: Callable[[float], Any] | None = None
    nvml: Any = None
    interval: float = 0.1


def choose_sampler(prefer: str = "auto", probes: Probes = Probes()) -> tuple[Sampler, str]:
    """The first backend that works, in `prefer`'s order, and why it was picked."""
    if prefer not in CHOICES:
        raise InvalidArgumentError(expected("telemetry backend", " | ".join(CHOICES), prefer))
    order = BACKENDS if prefer == "auto" else (prefer, *(b for b in BACKENDS if b != prefer))
    skipped: list[str] = []
    for name in order:
        try:
            sampler, why = _BUILDERS[name](probes, name == prefer)
        except TelemetryUnavailable as e:
            skipped.append(f"{name}{' requested but' if name == prefer else ''} unavailable: {e}")
            continue
        return sampler, f"{name}: {why}" + (f" ({'; '.join(skipped)})" if skipped else "")
    raise AssertionError("psutil backend cannot be unavailable")  # pragma: no cover


def _jtop(probes: Probes, explicit: bool) -> tuple[Sampler, str]:
    evidence = jetson_evidence(probes.root)
    if evidence is None:
        raise TelemetryUnavailable(
            "not a Jetson (no /etc/nv_tegra_release, /proc/device-tree/model does not say Jetson)"
        )
    client = connect_jtop(probes.interval, probes.root / "run/jtop.sock", probes.jtop_factory)
    sampler = JtopSampler(client)
    every = sampler.service_interval()
    cadence = f"; jtop.service refreshes every {every:g} s" if every else ""
    return sampler, f"Jetson ({evidence}){cadence}"


def _nvml(probes: Probes, explicit: bool) -> tuple[Sampler, str]:
    sampler = NvmlSampler(probes.nvml)
    return sampler, f"NVIDIA GPU {sampler.index} ({sampler.device_name})"


def _psutil(probes: Probes, explicit: bool) -> tuple[Sampler, str]:
    why = "requested" if explicit else "neither jtop nor NVML available"
    return PsutilSampler(), f"{why}; host memory and CPU only, no power"


_BUILDERS: dict[str, Callable[[Probes, bool], tuple[Sampler, str]]] = {
    "jtop": _jtop,
    "nvml": _nvml,
    "psutil": _psutil,
}
