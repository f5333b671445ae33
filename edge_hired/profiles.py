"""Device profiles: what a board or GPU offers, loaded from people-written TOML into frozen data.

A profile says how much memory the device has and what the OS, a desktop and the CUDA context
take from it, how fast it is (for estimates only), and which runtime settings suit it. The
memory planner (`edge_hired.budget`) turns a profile into a visual-token budget.

Profiles live in the repository's top-level `profiles/` folder, one `<name>.toml` per device;
`EDGE_HIRED_PROFILES` points elsewhere (a folder, or one .toml file). Every key is checked: an
unknown, missing, mistyped or out-of-range key is a `ProfileError` naming the file and the key.
Memory is in GiB (2**30 bytes, what `free` and CUDA report); bandwidth in GB/s (10**9 bytes).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_hired.errors import EdgeHiredError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PROFILES_ENV = "EDGE_HIRED_PROFILES"
GIB = 2**30
QUANTIZATIONS = ("none", "8bit", "4bit")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
MEMORY_SOURCES = ("fixed", "meminfo")


class ProfileError(EdgeHiredError):
    """A profile that does not exist or whose file is malformed."""


@dataclass(frozen=True)
class MemorySpec:
    """Memory of the device and what is not ours to use."""

    source: str  # "fixed": total_gib below; "meminfo": this machine's MemAvailable at plan time
    total_gib: float | None  # memory the OS / CUDA sees; None when source == "meminfo"
    unified: bool  # CPU and GPU share it (Jetson, CPU): host-side memory counts against the cap
    os_gib: float  # the OS and its services, headless
    desktop: bool  # whether a desktop session is assumed to run
    desktop_gib: float  # what that desktop takes (counted only when desktop = true)
    cuda_context_gib: float  # CUDA context, cuBLAS/cuDNN handles and workspaces
    runtime_gib: float | None  # Python + torch + transformers host memory; None: planner default

    def usable_gib(self) -> float | None:
        """Memory left for edge-hired: total minus OS (and desktop); None for 'meminfo'."""
        if self.total_gib is None:
            return None
        return self.total_gib - self.os_gib - (self.desktop_gib if self.desktop else 0.0)


@dataclass(frozen=True)
class PerformanceSpec:
    """Peak figures, used only for the labelled TTFT / decode estimates."""

    bandwidth_gb_s: float
    fp16_tflops: float


@dataclass(frozen=True)
class RuntimeSpec:
    """Defaults that suit the device."""

    device: str  # torch device of the LLM: "cpu" or "cuda"
    providers: tuple[str, ...]  # ONNX Runtime execution providers, in preference order
    quantization: str  # "none", "8bit" or "4bit"
    compute_dtype: str
    kv_cache_dtype: str


@dataclass(frozen=True)
class DeviceProfile:
    """One device, as its profile file describes it."""

    name: str
    description: str
    memory: MemorySpec
    performance: PerformanceSpec
    runtime: RuntimeSpec
    path: Path | None = None


# --- the schema, as data ----------------------------------------------------------------------

Check = Callable[[Any], str | None]  # None when fine, else what was expected


def _number(minimum: float, strict: bool) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
        return None if ok else f"a number {'>' if strict else '>='} {minimum:g}"

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "non-empty text"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _providers(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and v.endswith("ExecutionProvider") for v in value)
    )
    return None if ok else 'a list of ONNX Runtime providers, e.g. ["CPUExecutionProvider"]'


POSITIVE, NON_NEGATIVE = _number(0, strict=True), _number(0, strict=False)

#: section -> key -> (check, required). Top-level keys live in section "".
SCHEMA: dict[str, dict[str, tuple[Check, bool]]] = {
    "": {"name": (_text, False), "description": (_text, True)},
    "memory": {
        "source": (_one_of(MEMORY_SOURCES), False),
        "total_gib": (POSITIVE, False),  # required unless source = "meminfo"
        "unified": (_flag, True),
        "os_gib": (NON_NEGATIVE, True),
        "desktop": (_flag, True),
        "desktop_gib": (NON_NEGATIVE, True),
        "cuda_context_gib": (NON_NEGATIVE, True),
        "runtime_gib": (NON_NEGATIVE, False),
    },
    "performance": {"bandwidth_gb_s": (POSITIVE, True), "fp16_tflops": (POSITIVE, True)},
    "runtime": {
        "device": (_one_of(DEVICES), True),
        "providers": (_providers, True),
        "quantization": (_one_of(QUANTIZATIONS), True),
        "compute_dtype": (_one_of(DTYPES), True),
        "kv_cache_dtype": (_one_of(DTYPES), True),
    },
}


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
    """Validate parsed TOML against SCHEMA and build the frozen profile."""
    sections = _sections(data, path)
    for section, keys in SCHEMA.items():
        _check_keys(sections[section], keys, section, path)
    memory = _memory(sections["memory"], path)
    name = sections[""].get("name", path.stem)
    if name != path.stem:
        raise ProfileError(f"{path}: name: expected the file's name {path.stem!r}, got {name!r}")
    runtime = dict(sections["runtime"], providers=tuple(sections["runtime"]["providers"]))
    return DeviceProfile(
        name=name,
        description=sections[""]["description"],
        memory=memory,
        performance=PerformanceSpec(**sections["performance"]),
        runtime=RuntimeSpec(**runtime),
        path=path,
    )


def _sections(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Split the document into its sections, refusing unknown tables by name."""
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    unknown = sorted(set(tables) - set(SCHEMA))
    if unknown:
        known = ", ".join(s for s in SCHEMA if s)
        raise ProfileError(f"{path}: unknown section [{unknown[0]}] (known: {known})")
    missing = [s for s in SCHEMA if s and s not in tables]
    if missing:
        raise ProfileError(f"{path}: missing section [{missing[0]}]")
    return {"": top, **tables}


def _check_keys(
    values: dict[str, Any], keys: dict[str, tuple[Check, bool]], section: str, path: Path
) -> None:
    """Unknown, missing and invalid keys of one section, each named as 'section.key'."""

    def dotted(key: str) -> str:
        return f"{section}.{key}" if section else key

    for key in values:
        if key not in keys:
            raise ProfileError(f"{path}: unknown key {dotted(key)!r} (known: {', '.join(keys)})")
    for key, (check, required) in keys.items():
        if key not in values:
            if required:
                raise ProfileError(f"{path}: missing key {dotted(key)!r}")
            continue
        wanted = check(values[key])
        if wanted is not None:
            raise ProfileError(f"{path}: {dotted(key)}: expected {wanted}, got {values[key]!r}")


def _memory(values: dict[str, Any], path: Path) -> MemorySpec:
    """The memory section, with the cross-key rules: a total unless 'meminfo', room left."""
    source = values.get("source", "fixed")
    if source == "fixed" and "total_gib" not in values:
        raise ProfileError(
            f"{path}: missing key 'memory.total_gib' (or set memory.source = \"meminfo\")"
        )
    if source == "meminfo" and "total_gib" in values:
        raise ProfileError(f'{path}: memory.total_gib: expected no total with source "meminfo"')
    spec = MemorySpec(
        source=source,
        total_gib=values.get("total_gib"),
        unified=values["unified"],
        os_gib=values["os_gib"],
        desktop=values["desktop"],
        desktop_gib=values["desktop_gib"],
        cuda_context_gib=values["cuda_context_gib"],
        runtime_gib=values.get("runtime_gib"),
    )
    usable = spec.usable_gib()
    if usable is not None and usable <= 0:
        raise ProfileError(
            f"{path}: memory: expected room left after the OS and desktop, got "
            f"total_gib {spec.total_gib:g} - os_gib {spec.os_gib:g} - desktop = {usable:.2f} GiB"
        )
    return spec
