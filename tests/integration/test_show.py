"""`edge-hired show` against `run --json`: the highlighted cells in the PNG are the kept tokens.

Cells are counted from the PNG's pixels (outline rings of the marker colour), never taken from
the picture's own report. The tiny models have random weights: nothing here depends on which
tokens they pick, only on the picture agreeing with `run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_hired.cli.main import main
from tests.helpers import (
    cell_pixels,
    highlighted_from_pixels,
    marker_mask,
    panel_boxes,
    read_png,
    ring_size,
    textured_image,
)

pytestmark = pytest.mark.integration

# name: (image (height, width), expected grid, selection flags)
CASES = {
    "wide": ((400, 800), [1, 2], ["--budget", "0.2"]),
    "square": ((500, 500), [2, 2], ["--tokens", "300", "--strategy", "spatial"]),
    "padded": ((350, 800), [1, 3], ["--budget", "0.3", "--strategy", "hired-ref"]),
}


def cli_json(capsys, *argv: str) -> dict:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def run_and_show(capsys, tmp_path: Path, model: Path, size, flags) -> tuple[dict, dict, Path]:
    image = tmp_path / "image.png"
    textured_image(*size, seed=size[0]).save(image)
    source = ["--model", str(model), "--image", str(image), "--device", "cpu", *flags]
    ran = cli_json(capsys, "run", *source, "--json", "--max-new-tokens", "1")
    out = tmp_path / "show.png"
    shown = cli_json(capsys, "show", *source, "--out", str(out), "--json")
    return ran, shown, out


def check_picture(ran: dict, shown: dict, out: Path) -> None:
    """Kept cells read from the pixels equal run's kept tokens; dropped valid cells are grey."""
    pixels = read_png(out)
    cell, outline = shown["cell_px"], shown["outline_px"]
    assert shown["size"] == [pixels.shape[1], pixels.shape[0]]
    assert int(marker_mask(pixels).sum()) == ran["visual_tokens_kept"] * ring_size(cell, outline)
    boxes = panel_boxes(shown["panels"], 24, cell)
    found = highlighted_from_pixels(pixels, boxes, cell, outline)
    assert sum(map(len, found)) == ran["visual_tokens_kept"]
    assert [len(f) for f in found] == [len(k) for k in ran["kept"]]
    assert found == ran["kept"]
    assert shown["partition_budgets"] == ran["partition_budgets"]
    invalid = shown["invalid_per_partition"]
    for part, part_boxes in enumerate(boxes):
        grey = [t for t in range(576) if _is_grey(cell_pixels(pixels, part_boxes[t], outline))]
        assert len(grey) == 576 - len(found[part]) - invalid[part], part
        assert not set(grey) & set(found[part])


def _is_grey(inside: np.ndarray) -> bool:
    inside = inside.astype(int)
    return bool((inside[:, 0] == inside[:, 1]).all() and (inside[:, 1] == inside[:, 2]).all())


@pytest.mark.parametrize("case", list(CASES))
def test_show_highlights_exactly_what_run_keeps(capsys, tmp_path, tiny_next_dir, case) -> None:
    size, grid, flags = CASES[case]
    ran, shown, out = run_and_show(capsys, tmp_path, tiny_next_dir, size, flags)
    assert ran["grid"] == grid
    check_picture(ran, shown, out)
    if case == "padded":
        assert all(shown["invalid_per_partition"][p] > 0 for p in (1, 3))


def test_show_llava15_one_partition(capsys, tmp_path, tiny_llava_dir) -> None:
    ran, shown, out = run_and_show(capsys, tmp_path, tiny_llava_dir, (300, 500), ["--tokens", "99"])
    assert ran["grid"] == [1, 1] and len(shown["panels"]) == 1
    assert ran["visual_tokens_kept"] == 99
    check_picture(ran, shown, out)


def test_show_from_a_bundle(capsys, tmp_path, tiny_next_dir) -> None:
    """The exported ONNX encoder path draws what `run --bundle` keeps."""
    from edge_hired.export.exporter import ExportOptions, export_bundle

    bundle = tmp_path / "bundle"
    options = ExportOptions(quantization="none", dtype="fp32", measure_memory=False)
    export_bundle(str(tiny_next_dir), bundle, options)
    image = tmp_path / "image.png"
    textured_image(350, 800).save(image)
    source = ["--bundle", str(bundle), "--image", str(image), "--budget", "0.25"]
    ran = cli_json(capsys, "run", *source, "--json", "--max-new-tokens", "1")
    out = tmp_path / "show.png"
    check_picture(ran, cli_json(capsys, "show", *source, "--out", str(out), "--json"), out)


def test_defaults_and_summary_without_json(capsys, tmp_path, monkeypatch) -> None:
    """No --model / --image: the embedded tiny model (built into a private cache), the sample."""
    monkeypatch.setenv("EDGE_HIRED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "pic.png"
    code = main(["show", "--out", str(out), "--tokens", "50", "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 0 and out.is_file()
    assert f"wrote {out}" in err and "50 tokens kept" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "pic.png"]  # no temp file


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "{tmp}/pic.jpg"], "ending in .png"),
        (["--out", "{tmp}/missing/pic.png"], "an existing directory"),
        (["--out", "{tmp}/pic.png", "--image", "{tmp}/nope.png"], "nope.png"),
        (["--out", "{tmp}/pic.png", "--model", "{tmp}/no-model"], "no-model"),
    ],
)
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, tiny_next_dir, argv, message) -> None:
    args = [a.format(tmp=tmp_path) for a in argv]
    if "--model" not in args:
        args += ["--model", str(tiny_next_dir)]
    code = main(["show", *args])
    _, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if not line.startswith("[edge-hired]")]
    assert len(errors) == 1 and errors[0].startswith("edge-hired: error:") and message in err
    assert not (tmp_path / "pic.png").exists()


def test_bad_cell_size_is_refused_before_loading(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["show", "--out", str(tmp_path / "pic.png"), "--cell-px", "2"])
    _, err = capsys.readouterr()
    assert stop.value.code == 2 and err.count("\n") == 1 and "--cell-px" in err
