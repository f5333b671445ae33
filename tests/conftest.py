"""Suite-wide settings: offline hub, slow tests last, quiet known warnings."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run fast tests first: unit, then integration, then anything marked slow."""

    def rank(item: pytest.Item) -> int:
        return (
            2
            if item.get_closest_marker("slow")
            else int(bool(item.get_closest_marker("integration")))
        )

    items.sort(key=rank)
