"""Device telemetry during a request: memory, load, power and energy, per phase.

One sampler interface (`Sampler`), three backends picked once with a printed reason:
jtop on a Jetson (unified RAM, GPU and EMC load, power rails, temperatures), NVML on an NVIDIA GPU
(GPU memory, load, power, temperature), psutil anywhere (process and system memory, CPU).
`TelemetryRecorder` samples in a background thread and marks phases; `recorder_for_run` wraps a
run for `edge-hired run --telemetry FILE.json`.
"""

from edge_hired.device.telemetry.base import (
    POWER_KEY,
    Readings,
    Sampler,
    TelemetryUnavailable,
)
from edge_hired.device.telemetry.choose import (
    BACKENDS,
    CHOICES,
    Probes,
    choose_sampler,
    jetson_evidence,
)
from edge_hired.device.telemetry.jtop_backend import JtopSampler, connect_jtop
from edge_hired.device.telemetry.nvml_backend import NvmlSampler
from edge_hired.device.telemetry.psutil_backend import PsutilSampler
from edge_hired.device.telemetry.recorder import (
    DEFAULT_INTERVAL_S,
    TelemetryRecorder,
    recorder_for_run,
)
from edge_hired.device.telemetry.report import (
    Phase,
    ReadError,
    Sample,
    TelemetryReport,
    read_telemetry,
    write_telemetry,
)

__all__ = [
    "BACKENDS",
    "CHOICES",
    "DEFAULT_INTERVAL_S",
    "POWER_KEY",
    "JtopSampler",
    "NvmlSampler",
    "Phase",
    "Probes",
    "PsutilSampler",
    "ReadError",
    "Readings",
    "Sample",
    "Sampler",
    "TelemetryRecorder",
    "TelemetryReport",
    "TelemetryUnavailable",
    "choose_sampler",
    "connect_jtop",
    "jetson_evidence",
    "read_telemetry",
    "recorder_for_run",
    "write_telemetry",
]
