"""Tiny random-weight checkpoints, built once per test session and loaded like hub models."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_hired.models.tiny import build_checkpoint


@pytest.fixture(scope="session")
def tiny_next_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("tiny-llava-next", tmp_path_factory.mktemp("models") / "tiny-next")


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("tiny-llava", tmp_path_factory.mktemp("models") / "tiny-llava")


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("tiny-llava-siglip", tmp_path_factory.mktemp("models") / "tiny-siglip")


@pytest.fixture(scope="session")
def tiny_onevision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("tiny-llava-onevision", tmp_path_factory.mktemp("models") / "tiny-ov")
