"""Which of a profile's calibrated figures apply to a model, and the model's fingerprint.

`profile calibrate` measures fixed costs (runtime, CUDA context), which hold for any model on
that device, and activation peaks and timings, which hold only for the model it ran. The
fingerprint (`model_key`) names what those depend on: the shapes, the quantization and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_hired.units import KIB, MIB

if TYPE_CHECKING:
    from edge_hired.planner.inputs import PlanInputs
    from edge_hired.profile_calibration import CalibrationSpec
    from edge_hired.profiles import DeviceProfile


@dataclass(frozen=True)
class ModelMeasurements:
    """The calibration's model-specific figures, when it was measured on this model."""

    encoder_bytes_per_partition: int
    prefill_bytes_per_token: float
    calibration: CalibrationSpec


def model_key(inputs: PlanInputs) -> str:
    """What activation peaks and timings depend on: shapes, quantization, dtypes."""
    llm, vision = inputs.llm, inputs.vision
    return (
        f"llm {llm.num_layers}x{llm.hidden_size}x{llm.intermediate_size} "
        f"heads {llm.num_heads}/{llm.num_kv_heads}x{llm.head_dim} {inputs.quantization} "
        f"{inputs.compute_dtype} kv {inputs.kv_dtype}; vision {vision.layers_run}x"
        f"{vision.hidden_size} {vision.crop_size}/{vision.patch_size} {inputs.vision_dtype}"
    )


def model_measurements(profile: DeviceProfile, inputs: PlanInputs) -> ModelMeasurements | None:
    """The profile's calibrated activation figures for `inputs`' model; None if not its model."""
    calibration = profile.calibration
    if calibration is None or calibration.model_key != model_key(inputs):
        return None
    return ModelMeasurements(
        int(calibration.encoder_activation_mib_per_partition * MIB),
        calibration.prefill_activation_kib_per_token * KIB,
        calibration,
    )


def calibration_note(profile: DeviceProfile, inputs: PlanInputs) -> str | None:
    """Why a calibrated profile's model figures are not used; None when they are or none exist."""
    calibration = profile.calibration
    if calibration is None or model_measurements(profile, inputs) is not None:
        return None
    return (
        f"calibration: measured on another model ({calibration.model}); its fixed costs apply, "
        "its activation and timing figures do not (recalibrate with this model)"
    )
