"""Device profiles: what a board or GPU offers, loaded from people-written TOML into frozen data.

A profile says how much memory the device has and what the OS, a desktop and the CUDA context
take from it, how fast it is (for estimates only), and which runtime settings suit it. The
memory planner (`edge_hired.planner`) turns a profile into a visual-token budget.

Profiles live in the repository's top-level `profiles/` folder, one `<name>.toml` per device;
`EDGE_HIRED_PROFILES` points elsewhere (a folder, or one .toml file). Every key is checked: an
unknown, missing, mistyped or out-of-range key is a `ProfileError` naming the file and the key.
Memory is in GiB (2**30 bytes, what `free` and CUDA report); bandwidth in GB/s (10**9 bytes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator
from pydantic.dataclasses import dataclass

from edge_hired.errors import EdgeHiredError, expected
from edge_hired.profile_calibration import CalibrationSpec
from edge_hired.schema import SCHEMA, expect, missing_key, non_blank, one_of, rule_broken, validate
from edge_hired.units import DTYPE_BYTES, QUANTIZATIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PROFILES_ENV = "EDGE_HIRED_PROFILES"
DEVICES = ("cpu", "cuda")
MEMORY_SOURCES = ("fixed", "meminfo")


class ProfileError(EdgeHiredError):
    """A profile that does not exist or whose file is malformed."""


# --- the schema -------------------------------------------------------------------------------

Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False), expect("a number > 0")]
NonNegative = Annotated[
    float, Field(strict=True, ge=0, allow_inf_nan=False), expect("a number >= 0")
]
Flag = Annotated[bool, Field(strict=True), expect("true or false")]
Text = Annotated[str, Field(strict=True), AfterValidator(non_blank), expect("non-empty text")]
Provider = Annotated[str, Field(strict=True, pattern=r"^.*ExecutionProvider$")]
Providers = Annotated[
    tuple[Provider, ...],
    Field(min_length=1),
    expect('a list of ONNX Runtime providers, e.g. ["CPUExecutionProvider"]'),
]


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class MemorySpec:
    """Memory of the device and what is not ours to use."""

    # "fixed": total_gib below; "meminfo": this machine's MemAvailable at plan time
    source: Annotated[str, one_of(MEMORY_SOURCES)] = "fixed"
    total_gib: Positive | None = None  # memory the OS / CUDA sees; None when "meminfo"
    unified: Flag  # CPU and GPU share it (Jetson, CPU): host-side memory counts against the cap
    os_gib: NonNegative  # the OS and its services, headless
    desktop: Flag  # whether a desktop session is assumed to run
    desktop_gib: NonNegative  # what that desktop takes (counted only when desktop = true)
    cuda_context_gib: NonNegative  # CUDA context, cuBLAS/cuDNN handles and workspaces
    runtime_gib: NonNegative | None = None  # Python + torch + transformers; None: planner's

    def usable_gib(self, headless: bool = False) -> float | None:
        """Memory left for edge-hired: total minus OS (and desktop); None for 'meminfo'.

        `headless` leaves the desktop out even where the profile assumes one runs.
        """
        if self.total_gib is None:
            return None
        desktop = self.desktop_gib if self.desktop and not headless else 0.0
        return self.total_gib - self.os_gib - desktop

    @model_validator(mode="after")
    def _rules(self) -> MemorySpec:
        """A total unless 'meminfo' (and none with it), and room left after OS and desktop."""
        if self.source == "fixed" and self.total_gib is None:
            raise missing_key("total_gib", '(or set memory.source = "meminfo")')
        if self.source == "meminfo" and self.total_gib is not None:
            raise rule_broken('no total with source "meminfo"', repr(self.total_gib), "total_gib")
        usable = self.usable_gib()
        if usable is not None and usable <= 0:
            terms = f"total_gib {self.total_gib:g} - os_gib {self.os_gib:g} - desktop"
            raise rule_broken("room left after the OS and desktop", f"{terms} = {usable:.2f} GiB")
        return self


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class PerformanceSpec:
    """Peak figures, used only for the labelled TTFT / decode estimates."""

    bandwidth_gb_s: Positive
    fp16_tflops: Positive


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class RuntimeSpec:
    """Defaults that suit the device."""

    device: Annotated[str, one_of(DEVICES)]  # torch device of the LLM
    providers: Providers  # ONNX Runtime execution providers, in preference order
    quantization: Annotated[str, one_of(QUANTIZATIONS)]
    compute_dtype: Annotated[str, one_of(tuple(DTYPE_BYTES))]  # of fp16 / fp32 checkpoints
    kv_cache_dtype: Annotated[str, one_of(tuple(DTYPE_BYTES))]
    # Whether the device computes bf16 (CUDA compute capability >= 8.0: Ampere, Orin sm_87;
    # not Pascal or Turing). A checkpoint trained in bf16 computes in bf16 where true, in
    # `compute_dtype` with a warning where false; unset: asked of the device at run time.
    bf16: Flag | None = None


@dataclass(frozen=True, kw_only=True, config=SCHEMA)
class DeviceProfile:
    """One device, as its profile file describes it."""

    name: Text
    description: Text
    memory: MemorySpec
    performance: PerformanceSpec
    runtime: RuntimeSpec
    calibration: CalibrationSpec | None = None  # written by `edge-hired profile calibrate`
    # The file read; set by the loader (a file's own `path` key is not a Path: refused).
    path: Path | None = Field(default=None, strict=True, exclude=True)


# --- locating and loading ---------------------------------------------------------------------


def profiles_dir() -> Path:
    """`$EDGE_HIRED_PROFILES` if set, else the repository's top-level `profiles/` folder."""
    override = os.environ.get(PROFILES_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "profiles"


def profile_paths(folder: Path | None = None) -> list[Path]:
    """Every profile file, sorted by name (a single file when the override names one)."""
    folder = profiles_dir() if folder is None else folder
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ProfileError(f"{folder}: expected a folder of profile .toml files, got none")
    return sorted(folder.glob("*.toml"))


def profile_names(folder: Path | None = None) -> list[str]:
    """Names of the known profiles."""
    return [path.stem for path in profile_paths(folder)]


def load_profile(name_or_path: str | Path, folder: Path | None = None) -> DeviceProfile:
    """A profile by name (`orin-nx-8gb`) or by the path of a .toml file."""
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        return read_profile(Path(text).expanduser())
    for path in profile_paths(folder):
        if path.stem == text:
            return read_profile(path)
    known = ", ".join(profile_names(folder)) or "none"
    raise ProfileError(f"profile {text!r}: no such profile (known: {known})")


def load_all(folder: Path | None = None) -> list[DeviceProfile]:
    """Every profile, each validated."""
    return [read_profile(path) for path in profile_paths(folder)]


def read_profile(path: Path) -> DeviceProfile:
    """Parse and validate one profile file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: unreadable ({error})") from error
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML ({error})") from error
    return profile_from_dict(data, path)


def profile_from_dict(data: dict[str, Any], path: Path) -> DeviceProfile:
    """Validate parsed TOML (the name defaults to the file's) into the frozen profile."""
    profile = validate(
        DeviceProfile, {"name": path.stem, "path": path, **data}, str(path), ProfileError
    )
    if profile.name != path.stem:
        raise ProfileError(
            expected(f"{path}: name", f"the file's name {path.stem!r}", profile.name)
        )
    return profile
