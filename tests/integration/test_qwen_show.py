"""`show` for the Qwen families: the picture's outlined cells are the tokens `run` keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_hired.cli.main import main
from edge_hired.models.tiny import build_checkpoint
from edge_hired.visualize import MARKER
from tests.helpers import textured_image

pytestmark = pytest.mark.integration

COMMON = ["--budget", "0.2", "--device", "cpu", "--json"]


def json_of(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("family", ["tiny-qwen3-vl", "tiny-qwen2.5-vl"])
@pytest.mark.parametrize("strategy", ["hired", "dart"])
def test_outlined_cells_are_the_kept_tokens_of_run(
    family: str, strategy: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = build_checkpoint(family, tmp_path / family)
    image = tmp_path / "tall.png"
    textured_image(500, 300, seed=5).save(image)
    source = ["--model", str(model), "--image", str(image), "--strategy", strategy, *COMMON]
    out = tmp_path / "show.png"
    report = json_of(capsys, ["show", *source, "--out", str(out)])
    ran = json_of(capsys, ["run", *source, "--max-new-tokens", "1"])
    outlined = outlined_cells(report, out)
    assert outlined == ran["kept"][0]  # raster indices over the merged grid
    assert report["visual_tokens_kept"] == ran["visual_tokens_kept"] == len(outlined)


def outlined_cells(report: dict, out: Path) -> list[int]:
    """Raster indices of the cells `show` outlined (asserting it drew rings only)."""
    pixels = np.asarray(Image.open(out).convert("RGB"))
    marked = (pixels == MARKER).all(axis=2)
    x0, y0 = report["panels"][0]
    cell = report["cell_px"]
    grid_h = (report["heat_box"][3] - report["heat_box"][1]) // cell
    grid_w = (report["heat_box"][2] - report["heat_box"][0]) // cell
    outlined = [
        r * grid_w + c
        for r in range(grid_h)
        for c in range(grid_w)
        if marked[y0 + r * cell, x0 + c * cell]  # a ring's corner pixel
    ]
    assert int(marked.sum()) == len(outlined) * (cell * cell - (cell - 4) ** 2)  # rings only
    return outlined
