"""`edge-hired run` from the command line: JSON output, odd images, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_hired.cli.main import main
from tests.helpers import textured_image

pytestmark = pytest.mark.integration


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "wide.png"
    textured_image(400, 800).save(path)
    return path


def test_json_output_has_the_documented_fields(capsys, tiny_next_dir, image_path) -> None:
    code, out, _ = run_cli(
        capsys,
        "run",
        "--model",
        str(tiny_next_dir),
        "--image",
        str(image_path),
        "--prompt",
        "What?",
        "--budget",
        "0.2",
        "--json",
        "--max-new-tokens",
        "3",
    )
    assert code == 0
    data = json.loads(out)
    assert data["grid"] == [1, 2] and len(data["kept"]) == 3
    assert data["budget_tokens"] == int(0.2 * 3 * 576)
    assert data["visual_tokens_kept"] == sum(map(len, data["kept"])) == data["budget_tokens"]
    assert 1 <= len(data["token_ids"]) <= 3


def test_streams_text_then_metrics(capsys, tiny_next_dir, image_path) -> None:
    code, out, err = run_cli(
        capsys,
        "run",
        "--model",
        str(tiny_next_dir),
        "--image",
        str(image_path),
        "--tokens",
        "300",
        "--max-new-tokens",
        "4",
    )
    assert code == 0 and out.strip()
    assert "TTFT" in err and "300 kept of" in err


def odd_images(directory: Path) -> list[Path]:
    """Valid but unusual files: 1x1, long strips, RGBA, CMYK, 16-bit, palette."""
    rgb = textured_image(40, 60)
    cases = {
        "one.png": Image.new("RGB", (1, 1), (200, 10, 10)),
        "strip_wide.png": textured_image(3, 4000),
        "strip_tall.png": textured_image(4000, 3),
        "rgba.png": rgb.convert("RGBA"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "gray16.png": Image.fromarray((np.arange(2400).reshape(40, 60) * 27).astype(np.uint16)),
        "palette.png": rgb.convert("P"),
    }
    for name, image in cases.items():
        image.save(directory / name)
    return [directory / name for name in cases]


def test_odd_but_valid_images_run(capsys, tmp_path, tiny_next_dir) -> None:
    for path in odd_images(tmp_path):
        code, out, err = run_cli(
            capsys,
            "run",
            "--model",
            str(tiny_next_dir),
            "--image",
            str(path),
            "--budget",
            "0.5",
            "--json",
            "--max-new-tokens",
            "1",
        )
        assert code == 0, (path.name, err)
        assert json.loads(out)["visual_tokens_kept"] >= 1


def bad_files(directory: Path) -> dict[str, Path]:
    """Files that must be refused: missing, text, truncated, empty, too large."""
    textured_image(64, 64).save(directory / "good.png")
    whole = (directory / "good.png").read_bytes()
    (directory / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (directory / "empty.png").write_bytes(b"")
    (directory / "text.png").write_text("not an image at all\n")
    Image.new("1", (9000, 9000)).save(directory / "huge.png")
    return {
        name: directory / name
        for name in ("missing.png", "truncated.png", "empty.png", "text.png", "huge.png")
    }


@pytest.mark.parametrize(
    "name", ["missing.png", "truncated.png", "empty.png", "text.png", "huge.png"]
)
def test_bad_images_give_one_line_and_exit_2(name, capsys, tmp_path, tiny_next_dir) -> None:
    path = bad_files(tmp_path)[name]
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_next_dir), "--image", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path.name) in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flags",
    [
        ["--budget", "0"],
        ["--budget", "nan"],
        ["--budget", "1.5"],
        ["--budget", "-0.1"],
        ["--tokens", "0"],
        ["--strategy", "nope"],
        ["--alpha", "2"],
    ],
)
def test_bad_budgets_and_strategies_exit_2(flags, capsys, tiny_next_dir, image_path) -> None:
    argv = ["run", "--model", str(tiny_next_dir), "--image", str(image_path), *flags]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refuses it before any work
        code = stop.code
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
    assert repr(flags[1]) in err or flags[1] in err


def test_a_directory_that_is_no_model(capsys, tmp_path, image_path) -> None:
    code, _, err = run_cli(capsys, "run", "--model", str(tmp_path), "--image", str(image_path))
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "config.json" in errors[0]
    assert "Traceback" not in err


def test_real_process_exit_code_and_no_traceback(tmp_path, tiny_next_dir) -> None:
    cmd = [
        sys.executable,
        "-m",
        "edge_hired.cli.main",
        "run",
        "--model",
        str(tiny_next_dir),
        "--image",
        str(tmp_path / "absent.jpg"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "absent.jpg" in done.stderr


def test_memory_cap_that_admits_part_of_the_tokens(tiny_next_dir, tmp_path) -> None:
    """In a fresh process (what the planner predicts): part of the tokens, peak under the cap."""
    square = tmp_path / "square.png"
    textured_image(672, 672).save(square)  # 2880 tokens; 0.46 GiB is above the fixed costs only
    cmd = [
        sys.executable,
        "-m",
        "edge_hired.cli.main",
        "run",
        "--model",
        str(tiny_next_dir),
        "--image",
        str(square),
        "--memory-cap",
        "0.46",
        "--json",
        "--max-new-tokens",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert 0 < data["visual_tokens_kept"] < data["visual_tokens_total"]
    assert data["visual_tokens_kept"] == data["budget_tokens"]
    assert data["peak_rss_mib"] < 0.46 * 1024
    # the plan's peak is reported beside the measured ones (no device peak on a CPU)
    assert 0 < data["predicted_peak_mib"] < 0.46 * 1024 and data["device_peak_mib"] is None


def test_memory_cap_below_the_fixed_costs_exits_2(capsys, tiny_next_dir, image_path) -> None:
    code, out, err = run_cli(
        capsys,
        "run",
        "--model",
        str(tiny_next_dir),
        "--image",
        str(image_path),
        "--memory-cap",
        "0.2",
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "short" in err and "Traceback" not in err


def test_full_strategy_that_does_not_fit_the_memory_plan_is_refused(
    capsys, tiny_next_dir, tmp_path
) -> None:
    square = tmp_path / "square.png"
    textured_image(672, 672).save(square)
    code, out, err = run_cli(
        capsys,
        "run",
        "--model",
        str(tiny_next_dir),
        "--image",
        str(square),
        "--memory-cap",
        "0.46",
        "--strategy",
        "full",
        "--json",
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--strategy full keeps all 2880" in err
