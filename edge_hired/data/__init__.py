"""Files shipped inside the package: the demo picture drawn by scripts/make_sample_image.py.

Located through importlib.resources so they are found in a source checkout and in an installed
wheel alike (package data glob: `edge_hired/data/*.png`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["sample_image_path"]


def sample_image_path() -> Path:
    """Path of the bundled 800x560 sample picture `sample.png`."""
    return Path(str(resources.files(__name__) / "sample.png"))
