"""The `[calibration]` section of a device profile: figures measured by `profile calibrate`.

A profile written by people holds datasheet figures and estimates; `edge-hired profile calibrate`
measures the device it runs on and adds this section: the fixed costs it measured (runtime,
CUDA context, ORT session), the activation peaks of the model it ran, and least-squares fits
of its timings, so the planner predicts peak memory and TTFT from measurements. Activation and
timing figures belong to the model they were measured with (`model_key`); the planner uses them
only for that model and says so otherwise.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from edge_hired.schema import SCHEMA, expect

Real = Annotated[float, Field(strict=True, allow_inf_nan=False), expect("a finite number")]
NonNegative = Annotated[
    float, Field(strict=True, ge=0, allow_inf_nan=False), expect("a number >= 0")
]
Text = Annotated[str, Field(strict=True, min_length=1), expect("non-empty text")]
Count = Annotated[int, Field(strict=True, ge=0), expect("an integer >= 0")]


def _coefficients(count: int, label: str) -> object:
    """A list of exactly `count` finite numbers (polynomial coefficients, lowest power first)."""
    return Annotated[
        tuple[Real, ...],
        Field(min_length=count, max_length=count),
        expect(f"a list of {count} numbers ({label})"),
    ]


Line = _coefficients(2, "a, b of a + b*x")
Quadratic = _coefficients(3, "a, b, c of a + b*n + c*n^2")


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class PeakCheck:
    """The planner's predicted peak against the peak measured in a fresh process."""

    visual_tokens: Count
    predicted_mib: NonNegative
    measured_mib: NonNegative


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class CalibrationSpec:
    """What `profile calibrate` measured, and on what."""

    measured_at: Text  # ISO 8601 time
    host: Text  # CPU model / GPU name / Jetson module, and its software
    model: Text  # the checkpoint or bundle measured
    model_key: Text  # the planner's fingerprint of that model's shapes and dtypes
    total_gib: NonNegative  # MemTotal, or the GPU's memory
    available_gib: NonNegative  # MemAvailable (or free GPU memory) when measured
    runtime_gib: NonNegative  # Python + torch + transformers + edge-hired after imports
    cuda_context_gib: NonNegative | None = None  # None: no CUDA on the device
    ort_session_gib: NonNegative | None = None  # None: not measured (no CUDA)
    encoder_activation_mib_per_partition: NonNegative
    prefill_activation_kib_per_token: NonNegative  # above the KV cache
    preprocess_s: Line  # x = partitions
    encoder_s: Line  # x = partitions
    prefill_s: Quadratic  # n = LLM input tokens; prefill to the first token
    decode_s_per_token: Line  # x = context length
    # What a process's first request adds to the fits (lazily mapped weights paged in, kernels
    # built for new shapes): `run` answers one request per process, a server or bench warms up.
    first_request_extra_s: NonNegative = 0.0
    peak_check: tuple[PeakCheck, ...] = ()
