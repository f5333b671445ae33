"""What a telemetry recording holds, its summaries, and its JSON file.

Times are seconds from the start of the recording. Energy is the trapezoid integral of the total
power reading (`power_total_mw`) over time; a window's edges are linearly interpolated between the
samples around them, and only the part of a window that samples cover is integrated. Without a
power reading (psutil, or a rail that never answered) energy and mean power are None.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_hired.device.telemetry.base import POWER_KEY
from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected

FORMAT = "edge-hired-telemetry/1"
Point = tuple[float, float]


@dataclass(frozen=True)
class Sample:
    """The readings taken at one instant."""

    t_s: float
    readings: Mapping[str, float]


@dataclass(frozen=True)
class Phase:
    """A named stretch of the request (preprocess, encode, select, prefill, decode)."""

    name: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class ReadError:
    """How often a reading group failed, and its first failure."""

    count: int
    first_message: str
    first_at_s: float


@dataclass(frozen=True)
class TelemetryReport:
    """A finished recording: samples, phases, and what could not be read."""

    backend: str
    reason: str
    interval_s: float
    samples: tuple[Sample, ...]
    phases: tuple[Phase, ...] = ()
    missing: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, ReadError] = field(default_factory=dict)
    memory_key: str = "process_rss_mib"
    started_at: str = ""

    def series(self, key: str) -> list[Point]:
        """(time, value) of one reading, over the samples that have it."""
        return [(s.t_s, s.readings[key]) for s in self.samples if key in s.readings]

    def reading_names(self) -> list[str]:
        """Every reading that appears in at least one sample, sorted."""
        return sorted({key for s in self.samples for key in s.readings})

    def duration_s(self) -> float:
        return self.samples[-1].t_s - self.samples[0].t_s if self.samples else 0.0

    def peak_memory_mib(self, start_s: float | None = None, end_s: float | None = None) -> dict:
        """Highest value of each memory-in-use reading (MiB), over the window."""
        keys = [k for k in self.reading_names() if k.endswith("_mib") and "_total_" not in k]
        peaks = {k: _peak(self._window(k, start_s, end_s)) for k in keys}
        return {k: v for k, v in peaks.items() if v is not None}

    def energy_j(self, start_s: float | None = None, end_s: float | None = None) -> float | None:
        """Joules drawn on the total power rail over the window (None without power)."""
        integral = _integrate(self._window(POWER_KEY, start_s, end_s))
        return None if integral is None else integral[0]

    def mean_power_w(
        self, start_s: float | None = None, end_s: float | None = None
    ) -> float | None:
        """Time-weighted mean of the total power rail over the window, in watts."""
        window = self._window(POWER_KEY, start_s, end_s)
        integral = _integrate(window)
        if integral is None or integral[1] <= 0:
            return window[0][1] / 1000 if window else None
        return integral[0] / integral[1]

    def energy_by_phase_j(self) -> dict[str, float | None]:
        """Joules per phase name (repeated names add up); None where power is not readable."""
        totals: dict[str, float | None] = {}
        for phase in self.phases:
            joules = self.energy_j(phase.start_s, phase.end_s)
            before = totals.get(phase.name, 0.0)
            totals[phase.name] = None if joules is None or before is None else before + joules
        return totals

    def phase_summaries(self) -> list[dict[str, Any]]:
        """Per phase: bounds, energy, mean power and peak memory."""
        return [
            {
                "name": p.name,
                "start_s": p.start_s,
                "end_s": p.end_s,
                "duration_s": p.duration_s,
                "energy_j": self.energy_j(p.start_s, p.end_s),
                "mean_power_w": self.mean_power_w(p.start_s, p.end_s),
                "peak_memory_mib": self.peak_memory_mib(p.start_s, p.end_s),
            }
            for p in self.phases
        ]

    def summary(self) -> dict[str, Any]:
        """The figures a person reads first."""
        return {
            "duration_s": self.duration_s(),
            "samples": len(self.samples),
            "peak_memory_mib": self.peak_memory_mib(),
            "mean_power_w": self.mean_power_w(),
            "energy_j": self.energy_j(),
            "energy_j_by_phase": self.energy_by_phase_j(),
        }

    def summary_line(self) -> str:
        """One line for the terminal."""
        peak = self.peak_memory_mib().get(self.memory_key)
        parts = [f"{self.backend}, {len(self.samples)} samples over {self.duration_s():.2f} s"]
        if peak is not None:
            parts.append(f"peak {self.memory_key} {peak:.0f} MiB")
        power, energy = self.mean_power_w(), self.energy_j()
        parts.append("power not readable" if power is None else f"mean {power:.2f} W")
        if energy is not None:
            parts.append(f"{energy:.2f} J")
        if self.errors:
            parts.append(f"read errors in {', '.join(sorted(self.errors))}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: header, summary, phases, gaps, then every sample."""
        return _rounded(
            {
                "format": FORMAT,
                "backend": self.backend,
                "reason": self.reason,
                "interval_s": self.interval_s,
                "started_at": self.started_at,
                "memory_key": self.memory_key,
                "power_key": POWER_KEY,
                "summary": self.summary(),
                "phases": self.phase_summaries(),
                "missing": dict(self.missing),
                "errors": {k: vars(e) for k, e in self.errors.items()},
                "samples": [{"t_s": s.t_s, "readings": dict(s.readings)} for s in self.samples],
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TelemetryReport:
        """Rebuild a report from `to_dict` output (summaries are recomputed, not read)."""
        if data.get("format") != FORMAT:
            raise InvalidArgumentError(expected("telemetry format", FORMAT, data.get("format")))
        return cls(
            backend=data["backend"],
            reason=data["reason"],
            interval_s=data["interval_s"],
            samples=tuple(Sample(s["t_s"], s["readings"]) for s in data["samples"]),
            phases=tuple(Phase(p["name"], p["start_s"], p["end_s"]) for p in data["phases"]),
            missing=data["missing"],
            errors={k: ReadError(**e) for k, e in data["errors"].items()},
            memory_key=data["memory_key"],
            started_at=data.get("started_at", ""),
        )

    def _window(self, key: str, start_s: float | None, end_s: float | None) -> list[Point]:
        points = self.series(key)
        if not points:
            return []
        lo = points[0][0] if start_s is None else start_s
        hi = points[-1][0] if end_s is None else end_s
        return clip(points, lo, hi)


def _rounded(value: Any) -> Any:
    """Floats rounded to 6 decimals (a microsecond); everything else as it is."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def clip(points: Sequence[Point], lo: float, hi: float) -> list[Point]:
    """The points inside [lo, hi], with values interpolated at the edges the samples cover."""
    if not points or hi < lo:
        return []
    lo, hi = max(lo, points[0][0]), min(hi, points[-1][0])
    if hi < lo:
        return []
    inside = [p for p in points if lo < p[0] < hi]
    edges = [(lo, _interpolate(points, lo))] + ([(hi, _interpolate(points, hi))] if hi > lo else [])
    return sorted([*edges, *inside])


def _interpolate(points: Sequence[Point], t: float) -> float:
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[0][1] if t <= points[0][0] else points[-1][1]


def _integrate(points: Sequence[Point]) -> tuple[float, float] | None:
    """(joules, seconds) from (time s, power mW) points; None without any point."""
    if not points:
        return None
    pairs = itertools.pairwise(points)
    millijoules = sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in pairs)
    return millijoules / 1000, points[-1][0] - points[0][0]


def _peak(points: Iterable[Point]) -> float | None:
    return max((v for _, v in points), default=None)


def missing_readings(samples: Sequence[Sample], expected_keys: Iterable[str]) -> dict[str, int]:
    """For each reading absent from some sample: in how many samples it is absent."""
    keys = set(expected_keys) | {k for s in samples for k in s.readings}
    counts = {k: sum(k not in s.readings for s in samples) for k in sorted(keys)}
    return {k: n for k, n in counts.items() if n}


def write_telemetry(report: TelemetryReport, path: str | Path) -> Path:
    """Write the report as JSON atomically (a temporary file beside it, then a rename)."""
    target = Path(path)
    try:
        _atomic_write(target, report.to_json() + "\n")
    except OSError as e:
        raise EdgeHiredError(f"telemetry file {target}: cannot write it ({e})") from e
    return target


def _atomic_write(target: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_telemetry(path: str | Path) -> TelemetryReport:
    """Load a report written by `write_telemetry`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgeHiredError(f"telemetry file {path}: cannot read it ({e})") from e
    return TelemetryReport.from_dict(data)
