"""Telemetry: the jtop and NVML backends replayed from hand-made readings in the libraries' own
shapes (written from the jetson-stats and pynvml sources, never captured on hardware), psutil for
real, the backend choice and its reason, read errors mid-run, energy, phases and the JSON file."""

from __future__ import annotations

import json
import mmap
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_hired.device.telemetry.base import POWER_KEY, Sampler, TelemetryUnavailable
from edge_hired.device.telemetry.choose import Probes, choose_sampler
from edge_hired.device.telemetry.jtop_backend import JtopSampler
from edge_hired.device.telemetry.nvml_backend import NvmlSampler
from edge_hired.device.telemetry.psutil_backend import PsutilSampler
from edge_hired.device.telemetry.recorder import TelemetryRecorder, recorder_for_run
from edge_hired.device.telemetry.report import (
    Phase,
    Sample,
    TelemetryReport,
    read_telemetry,
    write_telemetry,
)
from edge_hired.errors import EdgeHiredError, InvalidArgumentError

#: Hand-made fixtures: readings typed in the shapes jetson-stats' jtop and pynvml return, from the
#: libraries' sources (each file's "_about" says which); values are typical, not captured.
DATA = Path(__file__).parent.parent / "data" / "telemetry"
JTOP = json.loads((DATA / "handmade_jtop_orin_nx_16gb.json").read_text())
NVML = json.loads((DATA / "handmade_nvml_rtx3060_12gb.json").read_text())


# ---------------------------------------------------------------- fakes


class FakeJtopException(Exception):
    """Stands in for jtop.core.exceptions.JtopException."""


class FakeJtop:
    """A jtop client replaying snapshots; each property advances on its own, so one sample
    (which reads each property once) sees one snapshot."""

    def __init__(self, snapshots, interval=0.5, start_error=None):
        self._snapshots, self.interval, self._start_error = snapshots, interval, start_error
        self._reads = {"memory": 0, "gpu": 0, "power": 0, "temperature": 0}
        self.started = self.closed = False

    def start(self):
        if self._start_error is not None:
            raise self._start_error
        self.started = True

    def close(self):
        self.closed = True

    def _next(self, name):
        index = min(self._reads[name], len(self._snapshots) - 1)
        self._reads[name] += 1
        return self._snapshots[index][name]

    memory = property(lambda self: self._next("memory"))
    gpu = property(lambda self: self._next("gpu"))
    power = property(lambda self: self._next("power"))
    temperature = property(lambda self: self._next("temperature"))


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class FakeNvml:
    """The pynvml functions the NVML backend calls, replaying snapshots; `fail_power_on`
    lists the 1-based power reads that raise."""

    NVML_TEMPERATURE_GPU = 0
    NVMLError = FakeNVMLError

    def __init__(self, data=NVML, init_error=None, count=1, fail_power_on=()):
        self._data, self._init_error, self._count = data, init_error, count
        self._fail_power_on = set(fail_power_on)
        self._reads = {"memory": 0, "utilization": 0, "power_mw": 0, "temperature_c": 0}
        self.shutdowns = 0

    def _next(self, name):
        snapshots = self._data["snapshots"]
        self._reads[name] += 1
        return snapshots[min(self._reads[name], len(snapshots)) - 1][name]

    def nvmlInit(self):
        if self._init_error is not None:
            raise self._init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return self._count

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"handle{index}"

    def nvmlDeviceGetName(self, handle):
        return self._data["device_name"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(**self._next("memory"))

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(**self._next("utilization"))

    def nvmlDeviceGetPowerUsage(self, handle):
        if self._reads["power_mw"] + 1 in self._fail_power_on:
            self._reads["power_mw"] += 1
            raise FakeNVMLError("Unknown Error")
        return self._next("power_mw")

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._next("temperature_c")


def jetson_root(tmp_path: Path, socket: bool = True, release: bool = True) -> Path:
    if release:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc/nv_tegra_release").write_text(
            "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64\n"
        )
    if socket:
        (tmp_path / "run").mkdir()
        (tmp_path / "run/jtop.sock").touch()
    return tmp_path


def no_nvml():
    return FakeNvml(init_error=FakeNVMLError("NVML Shared Library Not Found"))


# ---------------------------------------------------------------- backends


def test_jtop_sampler_reads_handmade_orin_nx_readings_in_order():
    client = FakeJtop(JTOP["snapshots"])
    sampler = JtopSampler(client)
    readings = [sampler.read() for _ in JTOP["snapshots"]]
    assert all(errors == {} for _, errors in readings)
    for (values, _), snap in zip(readings, JTOP["snapshots"], strict=True):
        ram, power = snap["memory"]["RAM"], snap["power"]
        assert values["ram_used_mib"] == pytest.approx(ram["used"] / 1024)
        assert values["gpu_shared_mib"] == pytest.approx(ram["shared"] / 1024)
        assert values["emc_load_pct"] == snap["memory"]["EMC"]["val"]
        assert values["gpu_load_pct"] == snap["gpu"]["gpu"]["status"]["load"]
        assert values[POWER_KEY] == power["tot"]["power"]
        assert values["power_VDD_CPU_GPU_CV_mw"] == power["rail"]["VDD_CPU_GPU_CV"]["power"]
        assert values["temp_gpu_c"] == snap["temperature"]["gpu"]["temp"]
        assert values["process_rss_mib"] > 0
    encode = readings[1][0]
    assert encode[POWER_KEY] == 17840 and encode["ram_used_mib"] == pytest.approx(11114.0)
    assert "power_VDD_IN_mw" not in encode  # the input rail is the total, not a second rail
    assert not any(k.startswith("temp_cv") for k in encode)  # offline sensors (-256) dropped
    sampler.close()
    assert client.closed


def test_jtop_board_without_emc_or_power_monitors_reports_them_missing():
    snap = json.loads(json.dumps(JTOP["snapshots"][0]))
    del snap["memory"]["EMC"]
    snap["power"] = {}
    recorder = TelemetryRecorder(JtopSampler(FakeJtop([snap])), interval_s=10).start()
    report = recorder.stop()
    assert len(report.samples) == 2
    assert report.missing == {"emc_load_pct": 2, POWER_KEY: 2}
    assert report.errors == {}
    assert report.energy_j() is None and report.mean_power_w() is None


def test_nvml_sampler_reads_handmade_rtx3060_readings():
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml)
    assert sampler.device_name == "NVIDIA GeForce RTX 3060"
    for snap in NVML["snapshots"]:
        values, errors = sampler.read()
        assert errors == {}
        assert values["gpu_mem_used_mib"] == pytest.approx(snap["memory"]["used"] / 2**20)
        assert values["gpu_mem_total_mib"] == 12 * 1024
        assert values["gpu_load_pct"] == snap["utilization"]["gpu"]
        assert values["gpu_mem_load_pct"] == snap["utilization"]["memory"]
        assert values[POWER_KEY] == snap["power_mw"]
        assert values["temp_gpu_c"] == snap["temperature_c"]
    sampler.close()
    assert nvml.shutdowns == 1


def test_nvml_without_gpu_is_unavailable_and_shuts_down():
    nvml = FakeNvml(count=0)
    with pytest.raises(TelemetryUnavailable, match="no GPU"):
        NvmlSampler(nvml)
    assert nvml.shutdowns == 1


def test_psutil_sampler_sees_this_process_grow_by_200_mb():
    sampler = PsutilSampler()
    before, errors = sampler.read()
    assert errors == {}
    assert before["process_rss_mib"] > 0
    assert 0 < before["ram_used_mib"] <= before["ram_total_mib"]
    # Fresh anonymous pages, touched one by one: resident whatever the heap already holds.
    block = mmap.mmap(-1, 200 * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    after, _ = sampler.read()
    assert after["process_rss_mib"] - before["process_rss_mib"] > 150
    assert 0.0 <= after["cpu_pct"] <= 100.0
    block.close()


# ---------------------------------------------------------------- backend choice


def test_no_jetson_files_and_no_nvml_falls_back_to_psutil(tmp_path):
    sampler, reason = choose_sampler("auto", Probes(root=tmp_path, nvml=no_nvml()))
    assert isinstance(sampler, PsutilSampler)
    assert reason.startswith("psutil: ")
    assert "jtop unavailable: not a Jetson" in reason
    assert "nvml unavailable: NVML init failed: NVML Shared Library Not Found" in reason


def test_jetson_with_jtop_service_inactive_says_how_to_restart_it(tmp_path):
    root = jetson_root(tmp_path)
    inactive = FakeJtopException(
        "The jtop.service is not active. Please run:\nsudo jtop --install-service"
    )
    probes = Probes(
        root=root, nvml=no_nvml(), jtop_factory=lambda interval: FakeJtop([], start_error=inactive)
    )
    sampler, reason = choose_sampler("auto", probes)
    assert isinstance(sampler, PsutilSampler)
    assert "jtop unavailable: jtop service not active" in reason
    assert "The jtop.service is not active" in reason
    assert "sudo systemctl restart jtop.service" in reason
    assert "\n" not in reason


def test_jetson_without_jtop_socket_names_the_socket(tmp_path):
    root = jetson_root(tmp_path, socket=False)
    never = Probes(root=root, nvml=no_nvml(), jtop_factory=lambda i: pytest.fail("no socket"))
    _, reason = choose_sampler("auto", never)
    assert f"no {root / 'run/jtop.sock'}" in reason and "systemctl restart jtop.service" in reason


def test_jetson_with_jtop_service_picks_jtop(tmp_path):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(
        b"NVIDIA Jetson Orin NX Engineering Reference Developer Kit\0"
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run/jtop.sock").touch()
    client = FakeJtop(JTOP["snapshots"], interval=0.5)
    probes = Probes(root=tmp_path, nvml=FakeNvml(), jtop_factory=lambda interval: client)
    sampler, reason = choose_sampler("auto", probes)
    assert isinstance(sampler, JtopSampler) and client.started
    assert reason.startswith("jtop: Jetson (/proc/device-tree/model: NVIDIA Jetson Orin NX")
    assert "refreshes every 0.5 s" in reason


def test_nvml_present_is_picked_off_jetson(tmp_path):
    sampler, reason = choose_sampler("auto", Probes(root=tmp_path, nvml=FakeNvml()))
    assert isinstance(sampler, NvmlSampler)
    assert reason.startswith("nvml: NVIDIA GPU 0 (NVIDIA GeForce RTX 3060)")
    assert "jtop unavailable: not a Jetson" in reason


def test_nvml_init_failing_falls_back_with_its_message(tmp_path):
    nvml = FakeNvml(init_error=FakeNVMLError("Driver Not Loaded"))
    sampler, reason = choose_sampler("auto", Probes(root=tmp_path, nvml=nvml))
    assert isinstance(sampler, PsutilSampler)
    assert "nvml unavailable: NVML init failed: Driver Not Loaded" in reason


def test_explicit_choice_that_cannot_be_honoured_says_why(tmp_path):
    sampler, reason = choose_sampler("nvml", Probes(root=tmp_path, nvml=no_nvml()))
    assert isinstance(sampler, PsutilSampler)
    assert "nvml requested but unavailable: NVML init failed" in reason
    sampler, reason = choose_sampler("jtop", Probes(root=tmp_path, nvml=FakeNvml()))
    assert isinstance(sampler, NvmlSampler)
    assert "jtop requested but unavailable: not a Jetson" in reason


def test_explicit_psutil_is_honoured_even_with_a_gpu(tmp_path):
    sampler, reason = choose_sampler("psutil", Probes(root=tmp_path, nvml=FakeNvml()))
    assert isinstance(sampler, PsutilSampler) and reason.startswith("psutil: requested")


def test_unknown_backend_is_rejected():
    with pytest.raises(InvalidArgumentError, match=re.escape("auto | jtop | nvml | psutil")):
        choose_sampler("tegrastats")


# ---------------------------------------------------------------- recorder


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_power_read_error_mid_run_is_recorded_and_sampling_goes_on():
    sampler = NvmlSampler(FakeNvml(fail_power_on={3}))
    recorder = TelemetryRecorder(sampler, interval_s=0.01).start()
    wait_for(lambda: len(recorder._samples) >= 5)
    report = recorder.stop()
    assert len(report.samples) >= 6
    assert report.errors["power"].count == 1
    assert report.errors["power"].first_message == "FakeNVMLError: Unknown Error"
    assert report.errors["power"].first_at_s == report.samples[2].t_s
    assert report.missing == {POWER_KEY: 1}
    assert POWER_KEY not in report.samples[2].readings
    assert "gpu_mem_used_mib" in report.samples[2].readings  # the other groups still read
    assert all(POWER_KEY in s.readings for s in report.samples[3:])  # and power came back
    assert report.energy_j() is not None


class BrokenSampler(Sampler):
    name = "broken"
    expected = ("x",)

    def __init__(self):
        self.reads = 0

    def groups(self):
        return {}

    def read(self):
        self.reads += 1
        if self.reads >= 2:
            raise RuntimeError("device vanished")
        return {"x": 1.0, "nan": float("nan")}, {}

    def close(self):
        raise OSError("already gone")


def test_a_sampler_that_raises_never_reaches_the_caller():
    recorder = TelemetryRecorder(BrokenSampler(), interval_s=0.01).start()
    wait_for(lambda: len(recorder._samples) >= 3)
    report = recorder.stop()
    assert report.errors["read"].count == len(report.samples) - 1
    assert report.errors["read"].first_message == "RuntimeError: device vanished"
    assert report.errors["close"].first_message == "OSError: already gone"
    assert report.missing == {"x": len(report.samples) - 1}
    assert report.samples[0].readings == {"x": 1.0}  # NaN dropped: JSON has no NaN


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def test_phases_are_recorded_in_order_with_their_bounds():
    clock = Clock(100.0)
    recorder = TelemetryRecorder(PsutilSampler(), interval_s=10, clock=clock).start()
    # the pipeline's style: perf_counter boundaries passed after the fact
    for name, at in [
        ("preprocess", 100.0),
        ("encode", 100.25),
        ("select", 101.0),
        ("prefill", 101.5),
        ("decode", 102.0),
    ]:
        recorder.on_phase(name, at)
    recorder.on_phase(None, 104.0)  # the end of the last phase
    clock.now = 104.5
    with recorder.phase("report"):  # the context-manager style, on the recorder's clock
        clock.now = 105.0
    clock.now = 106.0
    recorder.mark("tail")
    clock.now = 107.0
    report = recorder.stop()
    assert report.phases == (
        Phase("preprocess", 0.0, 0.25),
        Phase("encode", 0.25, 1.0),
        Phase("select", 1.0, 1.5),
        Phase("prefill", 1.5, 2.0),
        Phase("decode", 2.0, 4.0),
        Phase("report", 4.5, 5.0),
        Phase("tail", 6.0, 7.0),
    )
    assert report.samples[-1].t_s == 7.0


def test_recorder_rejects_a_non_positive_interval():
    with pytest.raises(InvalidArgumentError, match="interval"):
        TelemetryRecorder(PsutilSampler(), interval_s=0)


def test_recorder_samples_in_the_background_at_its_interval():
    recorder = TelemetryRecorder(PsutilSampler(), interval_s=0.02).start()
    time.sleep(0.25)
    report = recorder.stop()
    ticks = report.duration_s() / 0.02
    assert 5 <= len(report.samples) <= ticks + 2  # first + one per tick (none missed twice) + last
    assert [s.t_s for s in report.samples] == sorted(s.t_s for s in report.samples)
    assert recorder.stop() is report  # idempotent
    assert not any(t.name == "edge-hired-telemetry" for t in threading.enumerate())


# ---------------------------------------------------------------- energy and summaries


def constant_report(watts=5.0, seconds=2.0, step=0.5, phases=()):
    n = int(seconds / step) + 1
    samples = tuple(
        Sample(i * step, {POWER_KEY: watts * 1000, "ram_used_mib": 100.0 + i}) for i in range(n)
    )
    return TelemetryReport("fake", "test", step, samples, tuple(phases), memory_key="ram_used_mib")


def test_energy_of_5_watts_for_2_seconds_is_10_joules():
    report = constant_report(phases=[Phase("encode", 0.5, 1.5), Phase("decode", 1.5, 2.0)])
    assert report.energy_j() == pytest.approx(10.0)
    assert report.mean_power_w() == pytest.approx(5.0)
    assert report.energy_by_phase_j() == pytest.approx({"encode": 5.0, "decode": 2.5})


def test_energy_of_a_ramp_interpolates_phase_edges():
    # 0 W at t=0 rising linearly to 4 W at t=2 s: 4 J in all, 1 J in [0, 1], 3 J in [1, 2]
    samples = tuple(Sample(t, {POWER_KEY: 2000.0 * t}) for t in (0.0, 0.4, 1.6, 2.0))
    phases = (Phase("a", 0.0, 1.0), Phase("b", 1.0, 2.0), Phase("a", 2.0, 2.0))
    report = TelemetryReport("fake", "test", 0.4, samples, phases)
    assert report.energy_j() == pytest.approx(4.0)
    assert report.energy_j(0.0, 1.0) == pytest.approx(1.0)
    assert report.energy_by_phase_j() == pytest.approx({"a": 1.0, "b": 3.0})
    assert report.mean_power_w(1.0, 2.0) == pytest.approx(3.0)


def test_energy_counts_only_what_samples_cover():
    report = constant_report()
    assert report.energy_j(1.0, 5.0) == pytest.approx(5.0)  # covered: 1.0 .. 2.0
    assert report.energy_j(3.0, 4.0) is None


def test_peak_memory_and_no_power_gives_none():
    samples = tuple(
        Sample(t, {"process_rss_mib": m, "ram_total_mib": 8000.0})
        for t, m in ((0.0, 10.0), (0.1, 250.0), (0.2, 40.0))
    )
    report = TelemetryReport("psutil", "test", 0.1, samples, (Phase("encode", 0.15, 0.2),))
    assert report.peak_memory_mib() == {"process_rss_mib": 250.0}  # totals are not usage
    assert report.peak_memory_mib(0.15, 0.2) == {"process_rss_mib": pytest.approx(145.0)}
    assert report.energy_j() is None and report.mean_power_w() is None
    assert report.energy_by_phase_j() == {"encode": None}
    assert "power not readable" in report.summary_line()


# ---------------------------------------------------------------- JSON


def test_json_file_is_written_atomically_and_reads_back(tmp_path):
    report = constant_report(phases=[Phase("encode", 0.5, 1.5)])
    path = write_telemetry(report, tmp_path / "runs" / "run.json")
    assert path == tmp_path / "runs" / "run.json"
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temp file left
    data = json.loads(path.read_text())
    assert data["format"] == "edge-hired-telemetry/1" and data["backend"] == "fake"
    assert data["summary"]["energy_j"] == pytest.approx(10.0)
    assert data["phases"][0] == {
        "name": "encode",
        "start_s": 0.5,
        "end_s": 1.5,
        "duration_s": 1.0,
        "energy_j": 5.0,
        "mean_power_w": 5.0,
        "peak_memory_mib": {"ram_used_mib": 103.0},
    }
    readings = {POWER_KEY: 5000.0, "ram_used_mib": 101.0}
    assert data["samples"][1] == {"t_s": 0.5, "readings": readings}
    again = read_telemetry(path)
    assert again.samples == report.samples and again.phases == report.phases
    assert again.to_dict() == data


def test_json_write_failure_is_a_clear_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(EdgeHiredError, match="cannot write"):
        write_telemetry(constant_report(), tmp_path / "taken")
    assert list((tmp_path / "taken").iterdir()) == []


def test_recorder_for_run_prints_the_reason_and_writes_the_file(tmp_path):
    lines: list[str] = []
    path = tmp_path / "t.json"
    probes = Probes(root=tmp_path, nvml=FakeNvml(), interval=0.01)
    with recorder_for_run(path, interval_s=0.01, echo=lines.append, probes=probes) as recorder:
        assert recorder is not None
        recorder.on_phase("encode", time.perf_counter())
        time.sleep(0.05)
    assert lines[0].startswith("telemetry: nvml: NVIDIA GPU 0 (NVIDIA GeForce RTX 3060)")
    assert lines[1].startswith("telemetry: nvml, ") and lines[1].endswith(f"-> {path}")
    report = read_telemetry(path)
    assert report.backend == "nvml" and [p.name for p in report.phases] == ["encode"]
    assert report.energy_j() > 0


def test_recorder_for_run_without_a_path_records_nothing(tmp_path):
    with recorder_for_run(None, echo=pytest.fail) as recorder:
        assert recorder is None


def test_recorder_for_run_still_writes_when_the_run_fails(tmp_path):
    path = tmp_path / "failed.json"
    probes = Probes(root=tmp_path, nvml=no_nvml())
    with (
        pytest.raises(ValueError, match="boom"),
        recorder_for_run(path, echo=lambda line: None, probes=probes),
    ):
        raise ValueError("boom")
    assert read_telemetry(path).backend == "psutil"
