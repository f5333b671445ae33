"""Jetson telemetry through jetson-stats (jtop): unified RAM, GPU and EMC load, power rails, heat.

jetson-stats is AGPL-3.0, so it is an optional extra (`pip install 'edge-hired[jetson]'`) and is
imported here only, when a jtop sampler is actually built. jtop is a client of `jtop.service`,
which publishes the board's figures on the socket /run/jtop.sock at the service's own interval.

The readings follow jtop 4.x-7.x: `memory["RAM"]` in KB (`used` is MemTotal - MemFree - Buffers -
Cached, so on a Jetson it already includes what the GPU holds; `shared` is NvMapMemUsed, the GPU's
share), `memory["EMC"]["val"]` in % of the memory controller's bandwidth, `gpu[name]["status"]
["load"]` in %, `power["rail"][name]["power"]` and `power["tot"]["power"]` in mW (`tot` is the
module's input rail, VDD_IN on an Orin NX, or the sum of the rails where the board has none),
`temperature[name]["temp"]` in °C (-256 when the sensor is offline).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_hired.device.telemetry.base import (
    POWER_KEY,
    Probe,
    ProcessProbe,
    Readings,
    Sampler,
    TelemetryUnavailable,
)

JTOP_SOCKET = Path("/run/jtop.sock")
RESTART_HINT = "sudo systemctl restart jtop.service (first install: sudo pip3 install jetson-stats)"
OFFLINE_TEMP = -256
KIB_PER_MIB = 1024


def connect_jtop(
    interval: float,
    socket: Path = JTOP_SOCKET,
    factory: Callable[[float], Any] | None = None,
) -> Any:
    """A started jtop client, or TelemetryUnavailable saying what is missing and how to fix it."""
    if not socket.exists():
        raise TelemetryUnavailable(f"jtop service not active (no {socket}): {RESTART_HINT}")
    client = (factory or _jtop_class())(interval)
    try:
        client.start()
    except Exception as e:  # jtop raises JtopException, but also OSError subclasses, on start
        raise TelemetryUnavailable(
            f"jtop service not active ({_one_line(e)}): {RESTART_HINT}"
        ) from e
    return client


def _jtop_class() -> Callable[[float], Any]:
    try:
        from jtop import jtop
    except ImportError as e:
        raise TelemetryUnavailable(
            "jetson-stats not installed: pip install 'edge-hired[jetson]'"
        ) from e
    return jtop


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class JtopSampler(Sampler):
    """Reads a started jtop client (or any object with the same properties, e.g. a test fake)."""

    name = "jtop"
    memory_key = "ram_used_mib"
    expected = ("ram_used_mib", "gpu_shared_mib", "emc_load_pct", "gpu_load_pct", POWER_KEY)

    def __init__(self, client: Any) -> None:
        self._client = client
        self._groups: dict[str, Probe] = {
            "memory": self._memory,
            "gpu": self._gpu,
            "power": self._power,
            "temperature": self._temperature,
            "process": ProcessProbe(),
        }

    def groups(self) -> dict[str, Probe]:
        return self._groups

    def service_interval(self) -> float | None:
        """How often jtop.service refreshes its figures, in seconds (None if unknown)."""
        interval = getattr(self._client, "interval", None)
        return float(interval) if isinstance(interval, (int, float)) else None

    def close(self) -> None:
        self._client.close()

    def _memory(self) -> Readings:
        memory = self._client.memory
        ram = memory["RAM"]
        values = {
            "ram_used_mib": ram["used"] / KIB_PER_MIB,
            "ram_total_mib": ram["tot"] / KIB_PER_MIB,
            "gpu_shared_mib": ram.get("shared", 0) / KIB_PER_MIB,
        }
        if "SWAP" in memory:
            values["swap_used_mib"] = memory["SWAP"]["used"] / KIB_PER_MIB
        if "EMC" in memory and "val" in memory["EMC"]:
            values["emc_load_pct"] = float(memory["EMC"]["val"])
        return values

    def _gpu(self) -> Readings:
        loads = [gpu["status"]["load"] for gpu in self._client.gpu.values()]
        return {
            ("gpu_load_pct" if i == 0 else f"gpu{i}_load_pct"): float(load)
            for i, load in enumerate(loads)
        }

    def _power(self) -> Readings:
        power = self._client.power
        if not power:  # a board without power monitors
            return {}
        values = {
            f"power_{name}_mw": float(rail["power"])
            for name, rail in power["rail"].items()
            if rail.get("online", True)
        }
        values[POWER_KEY] = float(power["tot"]["power"])
        return values

    def _temperature(self) -> Readings:
        return {
            f"temp_{name}_c": float(sensor["temp"])
            for name, sensor in self._client.temperature.items()
            if sensor.get("online", True) and sensor["temp"] != OFFLINE_TEMP
        }
