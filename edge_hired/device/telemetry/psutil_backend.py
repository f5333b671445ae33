"""Portable fallback: this process's RSS, system memory in use and CPU load, through psutil.

It measures no power, so reports made with it carry no energy figures.
"""

from __future__ import annotations

import psutil

from edge_hired.device.telemetry.base import Probe, ProcessProbe, Readings, Sampler
from edge_hired.units import MIB


class PsutilSampler(Sampler):
    """Host memory and CPU only; works on any OS psutil supports."""

    name = "psutil"
    memory_key = "process_rss_mib"
    expected = ("process_rss_mib", "ram_used_mib", "ram_total_mib", "cpu_pct")

    def __init__(self) -> None:
        self._groups: dict[str, Probe] = {"process": ProcessProbe(), "system": self._system}
        psutil.cpu_percent(interval=None)  # the first call only primes the counter

    def groups(self) -> dict[str, Probe]:
        return self._groups

    @staticmethod
    def _system() -> Readings:
        memory = psutil.virtual_memory()
        return {
            "ram_used_mib": (memory.total - memory.available) / MIB,
            "ram_total_mib": memory.total / MIB,
            "cpu_pct": float(psutil.cpu_percent(interval=None)),
        }
