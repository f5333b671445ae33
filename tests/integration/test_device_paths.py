"""GPU-path behaviour of the pipeline, checked on the CPU: a recording clock, meta devices."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edge_hired.device.sync import DeviceClock
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.helpers import textured_image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cpu_pipeline(tiny_next_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_next_dir), device="cpu")


def test_every_phase_mark_waits_for_a_cuda_device(
    cpu_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    pipeline = Pipeline(cpu_pipeline.parts, clock=DeviceClock("cuda"))
    pipeline.run(
        textured_image(300, 600),
        "What is it?",
        SelectionOptions(ratio=0.2),
        SamplingOptions(max_new_tokens=3),
    )
    # start, preprocessed, encoded, selected, first token, finished: each after a synchronize
    assert len(synced) == 6
    assert all(device == torch.device("cuda") for device in synced)


def test_a_cpu_clock_never_synchronizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: pytest.fail("synced"))
    DeviceClock("cpu").mark()


def test_pixels_stay_on_the_host_whatever_the_llm_device(cpu_pipeline: Pipeline) -> None:
    parts = replace(cpu_pipeline.parts, device=torch.device("meta"))
    pixels, geometry = Pipeline(parts).preprocess(textured_image(300, 600))
    assert pixels.device.type == "cpu"
    assert pixels.shape[0] == geometry.num_partitions
