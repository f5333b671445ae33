"""Device telemetry during a request: memory, load, power and energy, per phase.

One sampler interface (`Sampler`), three backends picked once with a printed reason:
jtop on a Jetson (unified RAM, GPU and EMC load, power rails, temperatures), NVML on an NVIDIA GPU
(GPU memory, load, power, temperature), psutil anywhere (process and system memory, CPU).
`TelemetryRecorder` samples in a background thread and marks phases; `recorder_for_run` wraps a
run for `edge-hired run --telemetry FILE.json`.
"""
