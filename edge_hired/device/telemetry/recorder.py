"""Sample a device in a background thread while a request runs, and mark the request's phases.

The recorder never ends the request it measures: a failed read is counted (with its first
message) and sampling goes on with the readings that still work. Phases are sequential: `mark`
starts one and ends the one before; `at` takes a `time.perf_counter()` value, the clock the
pipeline already uses for its phase boundaries, so they can be passed after the fact.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from edge_hired.device.telemetry.base import Readings, Sampler
from edge_hired.device.telemetry.choose import Probes, choose_sampler
from edge_hired.device.telemetry.report import (
    Phase,
    ReadError,
    Sample,
    TelemetryReport,
    missing_readings,
    write_telemetry,
)
from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected

DEFAULT_INTERVAL_S = 0.1


class TelemetryRecorder:
    """Background sampling plus phase marks; `stop()` returns the `TelemetryReport`."""

    def __init__(
        self,
        sampler: Sampler,
        interval_s: float = DEFAULT_INTERVAL_S,
        reason: str = "",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not interval_s > 0:
            raise InvalidArgumentError(expected("telemetry interval (s)", "> 0", interval_s))
        self.sampler, self.interval_s, self.reason, self._clock = sampler, interval_s, reason, clock
        self.report: TelemetryReport | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._samples: list[Sample] = []
        self._errors: dict[str, ReadError] = {}
        self._phases: list[Phase] = []
        self._open: tuple[str, float] | None = None
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._started_at = ""

    def start(self) -> TelemetryRecorder:
        """Take the first sample now and keep sampling every `interval_s` in the background."""
        if self._thread is not None:
            raise RuntimeError("telemetry recorder already started")
        self._t0 = self._clock()
        self._started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="edge-hired-telemetry", daemon=True)
        self._thread.start()
        return self

    def mark(self, name: str | None, at: float | None = None) -> None:
        """End the open phase and start `name` (None only ends) at `at` (perf_counter) or now."""
        t = self._offset(at)
        with self._lock:
            if self._open is not None:
                self._phases.append(Phase(self._open[0], self._open[1], t))
            self._open = (name, t) if name else None

    on_phase = mark  # the pipeline's callback: on_phase(name, perf_counter_time)

    def end_phase(self, at: float | None = None) -> None:
        """End the open phase, if any."""
        self.mark(None, at)

    @contextmanager
    def phase(self, name: str) -> Iterator[TelemetryRecorder]:
        """`with recorder.phase("encode"): ...` marks the block as one phase."""
        self.mark(name)
        try:
            yield self
        finally:
            self.end_phase()

    def stop(self) -> TelemetryReport:
        """Stop sampling, take a last sample, close the backend; idempotent."""
        if self.report is not None:
            return self.report
        if self._thread is None:
            raise RuntimeError("telemetry recorder was never started")
        self._halt.set()
        self._thread.join(timeout=max(5.0, 10 * self.interval_s))
        if not self._thread.is_alive():  # a hung device read keeps the thread; do not hang too
            self._sample()
        self.end_phase()
        self._close_sampler()
        self.report = self._build_report()
        return self.report

    def __enter__(self) -> TelemetryRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        tick = 1
        while not self._halt.wait(max(0.0, self._t0 + tick * self.interval_s - self._clock())):
            self._sample()
            elapsed = self._clock() - self._t0
            tick = max(tick + 1, math.floor(elapsed / self.interval_s) + 1)  # skip missed ticks

    def _sample(self) -> None:
        t = self._clock() - self._t0
        try:
            values, errors = self.sampler.read()
        except Exception as e:  # a broken backend must not end the request it measures
            values, errors = {}, {"read": f"{type(e).__name__}: {e}"}
        with self._lock:
            self._samples.append(Sample(t, _finite(values)))
            for group, message in errors.items():
                self._record_error(group, message, t)

    def _record_error(self, group: str, message: str, t: float) -> None:
        old = self._errors.get(group)
        self._errors[group] = (
            ReadError(1, message, t)
            if old is None
            else ReadError(old.count + 1, old.first_message, old.first_at_s)
        )

    def _close_sampler(self) -> None:
        try:
            self.sampler.close()
        except Exception as e:  # closing a monitor must not fail the finished request
            self._record_error("close", f"{type(e).__name__}: {e}", self._offset(None))

    def _offset(self, at: float | None) -> float:
        if self._thread is None:
            raise RuntimeError("telemetry recorder not started")
        return (self._clock() if at is None else at) - self._t0

    def _build_report(self) -> TelemetryReport:
        with self._lock:
            samples, phases = tuple(self._samples), tuple(self._phases)
            errors = dict(self._errors)
        return TelemetryReport(
            backend=self.sampler.name,
            reason=self.reason,
            interval_s=self.interval_s,
            samples=samples,
            phases=phases,
            missing=missing_readings(samples, self.sampler.expected),
            errors=errors,
            memory_key=self.sampler.memory_key,
            started_at=self._started_at,
        )


def _finite(values: Readings) -> Readings:
    """Keep readings that are finite numbers (JSON has no NaN); drop the rest."""
    kept: Readings = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            kept[key] = float(value)
    return kept


def _to_stderr(message: str) -> None:
    print(f"[edge-hired] {message}", file=sys.stderr, flush=True)


@contextmanager
def recorder_for_run(
    path: str | Path | None,
    prefer: str = "auto",
    interval_s: float = DEFAULT_INTERVAL_S,
    echo: Callable[[str], None] = _to_stderr,
    probes: Probes | None = None,
) -> Iterator[TelemetryRecorder | None]:
    """Record around a run and write `path` at the end; yields None when `path` is None.

    The backend and its reason are printed before the run. The file is written even if the run
    fails (then a write error is reported, not raised over the run's own error).
    """
    if path is None:
        yield None
        return
    sampler, reason = choose_sampler(prefer, probes or Probes(interval=interval_s))
    echo(f"telemetry: {reason}")
    recorder = TelemetryRecorder(sampler, interval_s, reason).start()
    try:
        yield recorder
    except BaseException:
        _finish(recorder, path, echo, quiet=True)
        raise
    _finish(recorder, path, echo, quiet=False)


def _finish(recorder: TelemetryRecorder, path: str | Path, echo, quiet: bool) -> None:
    report = recorder.stop()
    try:
        written = write_telemetry(report, path)
    except EdgeHiredError as e:
        if not quiet:
            raise
        echo(str(e))
        return
    echo(f"telemetry: {report.summary_line()} -> {written}")
