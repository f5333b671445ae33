"""The one sampler interface every telemetry backend implements.

A sampler reads the device in named groups ("memory", "power", ...). Each group is read on its own,
so a group that fails (a rail that stops answering, an NVML call a GPU does not support) costs only
its own readings: the others still arrive, and the caller learns which group failed and why.
Readings are a flat dict of floats whose names carry their unit (`ram_used_mib`, `power_total_mw`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable

import psutil

from edge_hired.errors import EdgeHiredError
from edge_hired.units import MIB

Readings = dict[str, float]
Probe = Callable[[], Readings]

POWER_KEY = "power_total_mw"
"""The board's (jtop) or GPU's (NVML) total input power; energy is integrated from it."""


class TelemetryUnavailable(EdgeHiredError):
    """A telemetry backend that cannot run here; the message says why and how to fix it."""


class Sampler(ABC):
    """Reads one device's figures, group by group."""

    name: str = "sampler"
    memory_key: str = "process_rss_mib"
    """The memory reading that best describes this device (plotted and summarised first)."""
    expected: tuple[str, ...] = ()
    """Readings this backend should always give; any absent from a sample is reported missing."""

    @abstractmethod
    def groups(self) -> dict[str, Probe]:
        """Named probes, each returning some readings."""

    def read(self) -> tuple[Readings, dict[str, str]]:
        """All readings that could be read now, and an error message per failed group."""
        values: Readings = {}
        errors: dict[str, str] = {}
        for group, probe in self.groups().items():
            try:
                values.update(probe())
            except Exception as e:  # a device read must never end the request it measures
                errors[group] = f"{type(e).__name__}: {e}"
        return values, errors

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release the device connection (no-op unless the backend holds one)."""


class ProcessProbe:
    """Resident memory of this process: every backend reports it beside the device's figures."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid or os.getpid())

    def __call__(self) -> Readings:
        return {"process_rss_mib": self._process.memory_info().rss / MIB}
