"""Device profiles (the files in profiles/ and their validation), free memory and Jetson detection.

Bad files must fail with one line that names the file and the key; Jetson detection and
MemAvailable are tested on hand-made fixtures written from the documented format of the device
files (/proc/meminfo, /proc/device-tree, /etc/nv_tegra_release), as jtop reads them.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from edge_hired.device.jetson import detect_jetson, parse_l4t_release
from edge_hired.device.memory_info import MemoryInfoError, host_memory, mem_available_bytes
from edge_hired.facts.memory_cap import memory_cap
from edge_hired.profiles import (
    PROFILES_ENV,
    ProfileError,
    load_all,
    load_profile,
    profile_names,
    profiles_dir,
    read_profile,
)
from edge_hired.units import GIB
from tests.helpers import run_cli

REQUIRED = {
    "orin-nano-4gb",
    "orin-nano-8gb",
    "orin-nx-8gb",
    "orin-nx-16gb",
    "agx-orin-32gb",
    "agx-orin-64gb",
    "agx-thor-128gb",
    "t4-16gb",
    "p40-24gb",
    "rtx-4060-8gb",
    "cpu",
}

GOOD = """\
description = "a test board"

[memory]
total_gib = 8.0   # test
unified = true
os_gib = 1.0      # test
desktop = false
desktop_gib = 0.5 # test
cuda_context_gib = 0.25  # test

[performance]
bandwidth_gb_s = 68   # test
fp16_tflops = 10      # test

[runtime]
device = "cuda"
providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
quantization = "4bit"
compute_dtype = "float16"
kv_cache_dtype = "float16"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


# --- the shipped profiles ---------------------------------------------------------------------


def test_every_required_profile_exists_and_loads() -> None:
    profiles = {p.name: p for p in load_all()}
    assert set(profiles) >= REQUIRED
    for name, profile in profiles.items():
        assert profile.path == profiles_dir() / f"{name}.toml"


def test_known_bandwidths_and_memory_facts() -> None:
    bandwidth = {p.name: p.performance.bandwidth_gb_s for p in load_all()}
    assert bandwidth["orin-nano-4gb"] == 34
    assert bandwidth["orin-nano-8gb"] == 68
    assert bandwidth["orin-nano-8gb-super"] == 102
    assert bandwidth["orin-nx-8gb"] == bandwidth["orin-nx-16gb"] == 102
    assert bandwidth["agx-orin-32gb"] == bandwidth["agx-orin-64gb"] == 204.8
    assert bandwidth["agx-thor-128gb"] == 273
    nano = load_profile("orin-nano-8gb").memory
    assert nano.total_gib == 7.44 and nano.unified  # tegrastats RAM .../7620MB (JetLLM)
    assert nano.usable_gib() == pytest.approx(4.89)  # JetLLM: ~4.9 GiB available with GNOME
    assert nano.usable_gib(headless=True) == pytest.approx(5.64)  # the desktop's ~0.75 back
    assert nano.desktop_gib * GIB / 1e6 == pytest.approx(800, abs=10)  # a desktop ~800 MB
    assert load_profile("cpu").memory.source == "meminfo"
    assert not load_profile("t4-16gb").memory.unified


def test_every_number_in_a_profile_has_a_comment() -> None:
    """A number's source sits on its line or on the comment line just above it."""
    for path in sorted(profiles_dir().glob("*.toml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            number = re.match(r"\s*\w+\s*=\s*-?[\d.]+\s*(#.*)?$", line)
            if number and not number.group(1):
                assert i and lines[i - 1].lstrip().startswith("#"), f"{path.name}:{i + 1}: {line}"


def test_profiles_are_frozen() -> None:
    profile = load_profile("orin-nx-8gb")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.memory.total_gib = 64  # type: ignore[misc]


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(
        ProfileError,
        match=r"profile 'orin-nano-9gb': no such profile \(known: "
        r"agx-orin-32gb, .*cpu",
    ):
        load_profile("orin-nano-9gb")


# --- locating ---------------------------------------------------------------------------------


def test_env_override_with_a_folder_and_with_one_file(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, "board", GOOD)
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path))
    assert profile_names() == ["board"]
    assert load_profile("board").memory.usable_gib() == 7.0  # 8 - 1 OS, no desktop
    monkeypatch.setenv(PROFILES_ENV, str(path))
    assert [p.name for p in load_all()] == ["board"]


def test_a_path_to_a_toml_file_is_accepted(tmp_path) -> None:
    path = write(tmp_path, "board", GOOD)
    assert load_profile(str(path)).name == "board"


# --- bad files: one line naming file and key --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("os_gib = 1.0", "os_gib = 1.0\ntotl_gib = 8"),
            "{path}: unknown key 'memory.totl_gib' (known: source, total_gib, unified, os_gib, "
            "desktop, desktop_gib, cuda_context_gib, runtime_gib)",
        ),
        (
            GOOD.replace("total_gib = 8.0", "total_gib = -8.0"),
            "{path}: memory.total_gib: expected a number > 0, got -8.0",
        ),
        (
            GOOD.replace("total_gib = 8.0   # test\n", ""),
            "{path}: missing key 'memory.total_gib' (or set memory.source = \"meminfo\")",
        ),
        (
            GOOD.replace("total_gib = 8.0", 'total_gib = "8"'),
            "{path}: memory.total_gib: expected a number > 0, got '8'",
        ),
        (
            GOOD.replace("bandwidth_gb_s = 68   # test\n", ""),
            "{path}: missing key 'performance.bandwidth_gb_s'",
        ),
        (
            GOOD.replace("unified = true", "unified = 1"),
            "{path}: memory.unified: expected true or false, got 1",
        ),
        (
            GOOD.replace('quantization = "4bit"', 'quantization = "3bit"'),
            "{path}: runtime.quantization: expected one of none, 8bit, 4bit, got '3bit'",
        ),
        (
            GOOD.replace("os_gib = 1.0", "os_gib = 9.0"),
            "{path}: memory: expected room left after the OS and desktop, got total_gib 8 - "
            "os_gib 9 - desktop = -1.00 GiB",
        ),
        (
            GOOD + "\n[gpu]\nsm = 8\n",
            "{path}: unknown key 'gpu' (known: name, description, memory, performance, runtime, "
            "calibration)",
        ),
        ('name = "other"\n' + GOOD, "{path}: name: expected the file's name 'board', got 'other'"),
        (
            GOOD.replace("total_gib = 8.0", 'source = "meminfo"\ntotal_gib = 8.0'),
            '{path}: memory.total_gib: expected no total with source "meminfo", got 8.0',
        ),
        (
            re.sub(r"providers = \[.*\]", "providers = []", GOOD),
            "{path}: runtime.providers: expected a list of ONNX Runtime providers, e.g. "
            '["CPUExecutionProvider"], got []',
        ),
        # Types are strict: TOML's true, "yes", inf or a bare provider name are refused, not cast.
        (
            GOOD.replace("unified = true", 'unified = "yes"'),
            "{path}: memory.unified: expected true or false, got 'yes'",
        ),
        (
            GOOD.replace("os_gib = 1.0", "os_gib = true"),
            "{path}: memory.os_gib: expected a number >= 0, got True",
        ),
        (
            GOOD.replace("fp16_tflops = 10", "fp16_tflops = inf"),
            "{path}: performance.fp16_tflops: expected a number > 0, got inf",
        ),
        (
            GOOD.replace('"CUDAExecutionProvider", ', '"CUDA", '),
            "{path}: runtime.providers: expected a list of ONNX Runtime providers, e.g. "
            "[\"CPUExecutionProvider\"], got ['CUDA', 'CPUExecutionProvider']",
        ),
        (
            GOOD.replace('description = "a test board"', 'description = "  "'),
            "{path}: description: expected non-empty text, got '  '",
        ),
        (
            GOOD.replace('device = "cuda"', 'device = "cuda"\nthreads = 4'),
            "{path}: unknown key 'runtime.threads' (known: device, providers, quantization, "
            "compute_dtype, kv_cache_dtype, bf16)",
        ),
        (
            GOOD.replace("fp16_tflops = 10      # test\n", ""),
            "{path}: missing key 'performance.fp16_tflops'",
        ),
    ],
)
def test_bad_profile_names_file_and_key(tmp_path, text: str, message: str) -> None:
    path = write(tmp_path, "board", text)
    with pytest.raises(ProfileError) as caught:
        read_profile(path)
    assert str(caught.value) == message.format(path=path)


def test_a_file_cannot_set_the_profile_path(tmp_path) -> None:
    """`path` is the loader's (where the file was read), never a key a file may set."""
    path = write(tmp_path, "board", 'path = "/elsewhere.toml"\n' + GOOD)
    with pytest.raises(ProfileError, match=r"board\.toml: path: expected an instance of Path"):
        read_profile(path)


def test_a_profile_is_frozen_and_a_changed_copy_is_checked_again() -> None:
    profile = load_profile("orin-nx-8gb")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.runtime.quantization = "3bit"  # type: ignore[misc]
    bigger = dataclasses.replace(profile.memory, total_gib=16.0)
    gained = bigger.usable_gib() - profile.memory.usable_gib()
    assert gained == pytest.approx(16.0 - profile.memory.total_gib)  # only the total changed
    with pytest.raises(ValueError, match="room left after the OS"):
        dataclasses.replace(profile.memory, total_gib=0.5)


def test_bad_toml_names_the_file_and_the_place(tmp_path) -> None:
    path = write(tmp_path, "board", GOOD.replace("os_gib = 1.0", "os_gib = = 1.0"))
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(path))}: not valid TOML \(.*line 6"):
        read_profile(path)


def test_a_missing_file_is_a_profile_error(tmp_path) -> None:
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(str(tmp_path / "nothing.toml"))


def test_cli_exits_2_with_one_line_for_a_bad_profile(tmp_path, monkeypatch, capsys) -> None:
    write(tmp_path, "board", GOOD.replace("total_gib = 8.0", "total_gib = -1"))
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path))
    assert run_cli(["profiles"]) == 2
    out = capsys.readouterr().out.strip()
    assert (
        out == f"edge-hired: error: {tmp_path / 'board.toml'}: memory.total_gib: "
        "expected a number > 0, got -1"
    )


def test_cli_lists_every_profile(capsys) -> None:
    assert run_cli(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert re.search(rf"^{re.escape(name)}\s", out, re.MULTILINE), name


# --- free memory ------------------------------------------------------------------------------

#: Hand-made, in /proc/meminfo's format, with an Orin Nano 8GB's MemTotal (not a capture).
ORIN_MEMINFO = """\
MemTotal:        7620000 kB
MemFree:          412000 kB
MemAvailable:    5123456 kB
Buffers:           40000 kB
Cached:          4500000 kB
"""


def test_mem_available_not_mem_free(tmp_path) -> None:
    """On a Jetson, MemFree (what cudaMemGetInfo reports) leaves the page cache out."""
    path = tmp_path / "meminfo"
    path.write_text(ORIN_MEMINFO)
    assert mem_available_bytes(path) == 5123456 * 1024
    memory = host_memory(path)
    assert (memory.free_bytes, memory.total_bytes) == (5123456 * 1024, 7620000 * 1024)


def test_old_kernel_without_mem_available_is_refused(tmp_path) -> None:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal: 1000 kB\nMemFree: 10 kB\n")
    with pytest.raises(MemoryInfoError, match="expected a MemAvailable line"):
        mem_available_bytes(path)


def test_cap_from_profile_override_and_meminfo(tmp_path) -> None:
    path = tmp_path / "meminfo"
    path.write_text(ORIN_MEMINFO)
    nano = load_profile("orin-nano-8gb")
    assert memory_cap(nano).bytes == int((7.44 - 1.8 - 0.75) * GIB)
    headless = memory_cap(nano, headless=True)
    assert headless.bytes == int((7.44 - 1.8) * GIB) and "(headless)" in headless.reason
    assert memory_cap(nano, override_gib=3.5).bytes == int(3.5 * GIB)
    cpu = memory_cap(load_profile("cpu"), meminfo=path)
    assert 5123456 * 1024 < cpu.bytes < 5123456 * 1024 + 4 * GIB  # plus this process's RSS
    busy = tmp_path / "busy"
    busy.write_text(ORIN_MEMINFO.replace("5123456", "2000000"))
    live = memory_cap(nano, live_kind="unified", meminfo=busy)  # a busy board: less is free
    assert live.bytes < memory_cap(nano).bytes and "MemAvailable" in live.reason
    assert memory_cap(nano, live_kind="unified", meminfo=path) == memory_cap(nano)


# --- Jetson detection on hand-made device files -----------------------------------------------

NUL = "\0"
RELEASE_36_4_3 = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:51:37 UTC 2025\n"
)


def board(
    tmp_path: Path,
    model: str | None,
    compatible: str | None,
    release: str | None,
    memtotal_kib: int = 7620000,
) -> dict[str, Path]:
    """Hand-made device files of one board in tmp_path, in the format the real ones have."""
    files = {
        "model_path": (model and model + NUL),
        "compatible_path": compatible,
        "release_path": release,
        "meminfo_path": f"MemTotal: {memtotal_kib} kB\n",
    }
    paths = {}
    for key, text in files.items():
        paths[key] = tmp_path / key
        if text is not None:
            paths[key].write_text(text)
    return paths


def test_orin_nano_devkit_by_part_number(tmp_path) -> None:
    compatible = NUL.join(["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"])
    info = detect_jetson(
        **board(tmp_path, "NVIDIA Jetson Orin Nano Developer Kit", compatible, RELEASE_36_4_3)
    )
    assert (info.profile, info.part, info.l4t) == ("orin-nano-8gb", "p3767-0005", "36.4.3")
    assert info.model == "NVIDIA Jetson Orin Nano Developer Kit"


@pytest.mark.parametrize(
    ("model", "memtotal_gib", "profile"),
    [
        ("NVIDIA Jetson AGX Orin Developer Kit", 61.4, "agx-orin-64gb"),
        ("NVIDIA Jetson AGX Orin Developer Kit", 30.6, "agx-orin-32gb"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15.3, "orin-nx-16gb"),
        ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit", 3.4, "orin-nano-4gb"),
        ("NVIDIA Jetson AGX Thor Developer Kit", 122, "agx-thor-128gb"),
    ],
)
def test_model_name_and_memtotal_without_part_number(tmp_path, model, memtotal_gib, profile):
    info = detect_jetson(
        **board(tmp_path, model, None, RELEASE_36_4_3, int(memtotal_gib * 1024 * 1024))
    )
    assert info.profile == profile and info.part is None


def test_a_jetson_without_a_profile_is_named(tmp_path) -> None:
    info = detect_jetson(
        **board(
            tmp_path,
            "NVIDIA Jetson Xavier NX (16GB)",
            "nvidia,p3509-0000+p3668-0003\0nvidia,tegra194",
            None,
        )
    )
    assert info.is_jetson and info.profile is None and info.part == "p3668-0003"


@pytest.mark.parametrize("compatible", ["nvidia,p3509-0000+p3668-0000\0nvidia,tegra194", None])
def test_a_xavier_gets_no_profile(tmp_path, compatible) -> None:
    # JetPack 5 at most: its torch is below what transformers 5.20+ accepts (support matrix).
    model = "NVIDIA Jetson Xavier NX Developer Kit"
    info = detect_jetson(**board(tmp_path, model, compatible, None, int(7.6 * 1024 * 1024)))
    assert info.is_jetson and info.profile is None
    assert "xavier-nx-8gb" not in {profile.name for profile in load_all()}


def test_not_a_jetson(tmp_path) -> None:
    info = detect_jetson(**board(tmp_path, None, None, None))
    assert not info.is_jetson and info.profile is None and info.reason.startswith("not a Jetson")


def test_l4t_release_parsing() -> None:
    assert parse_l4t_release(RELEASE_36_4_3) == "36.4.3"
    assert (
        parse_l4t_release("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref")
        == "32.7.1"
    )
    assert parse_l4t_release("garbage") is None


def test_detect_command_on_this_machine_is_not_a_jetson(capsys) -> None:
    if detect_jetson().is_jetson:
        pytest.skip("running on a Jetson")
    assert run_cli(["profile", "detect"]) == 1
    assert "not a Jetson" in capsys.readouterr().err
