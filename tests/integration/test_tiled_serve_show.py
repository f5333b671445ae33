"""InternVL / SmolVLM through `run --json`, `serve` and `show`: one engine, the same tokens.

`run --json` keeps its meaning: `kept[p]` are partition p's kept LLM tokens as raster indices of
its token grid, partition 0 the global view, tiles row-major; `show` highlights exactly those
cells (read back from the PNG's pixels); `serve` answers with the same token ids as `run`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from edge_hired.cli.main import main
from edge_hired.models.tiny import build_checkpoint
from edge_hired.serve.config import ServeConfig
from tests.helpers import highlighted_from_pixels, panel_boxes, read_png
from tests.integration.serve_support import served
from tests.integration.test_tiles_reference import noise

pytestmark = pytest.mark.integration

NEW = 5
PROMPT = "Describe the picture."
# preset -> (image size, grid, token-grid side)
CASES = {"tiny-internvl": ((448, 1344), [1, 3], 16), "tiny-smolvlm": ((300, 400), [3, 4], 8)}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("tiled-serve")
    out = {}
    for name, (size, _, _) in CASES.items():
        image = root / f"{name}.png"
        noise(*size, seed=4).save(image)
        out[name] = (build_checkpoint(name, root / name), image)
    return out


def cli_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("name", list(CASES))
def test_run_json_and_show_agree_on_partitions(
    capsys: pytest.CaptureFixture, tmp_path: Path, files: dict, name: str
) -> None:
    model, image = files[name]
    _, grid, side = CASES[name]
    source = ["--model", str(model), "--image", str(image), "--device", "cpu", "--budget", "0.2"]
    ran = cli_json(capsys, "run", *source, "--json", "--max-new-tokens", "1")
    partitions = 1 + grid[0] * grid[1]
    assert ran["grid"] == grid and len(ran["kept"]) == len(ran["partition_budgets"]) == partitions
    assert ran["visual_tokens_total"] == partitions * side * side
    assert ran["visual_tokens_kept"] == ran["budget_tokens"] == partitions * side * side // 5
    assert [len(k) for k in ran["kept"]] == ran["partition_budgets"]
    assert all(k == sorted(set(k)) and all(0 <= t < side * side for t in k) for k in ran["kept"])
    assert ran["partition_budgets"][0] == min(ran["budget_tokens"] // 2, side * side)

    out = tmp_path / "show.png"
    shown = cli_json(capsys, "show", *source, "--out", str(out), "--json")
    assert shown["partition_budgets"] == ran["partition_budgets"]
    boxes = panel_boxes(shown["panels"], side, shown["cell_px"])
    found = highlighted_from_pixels(read_png(out), boxes, shown["cell_px"], shown["outline_px"])
    assert found == ran["kept"]


def request(image: Path, budget: float) -> dict:
    url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": PROMPT}]
    messages = [{"role": "user", "content": content}]
    return {"model": "tiled", "messages": messages, "max_tokens": NEW, "temperature": 0,
            "hired": {"budget": budget}}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_serve_answers_with_runs_tokens(
    capsys: pytest.CaptureFixture, files: dict, name: str
) -> None:
    model, image = files[name]
    config = ServeConfig(model=str(model), model_name="tiled", device="cpu", max_batch=2)
    with served(config) as (base, _state):
        for budget in (0.2, 1.0):
            response = httpx.post(
                f"{base}/v1/chat/completions", json=request(image, budget), timeout=120
            )
            assert response.status_code == 200, response.text
            served_ids = response.json()["hired"]["completion_token_ids"]
            argv = ["run", "--model", str(model), "--image", str(image), "--prompt", PROMPT]
            argv += ["--budget", str(budget), "--max-new-tokens", str(NEW), "--device", "cpu"]
            ran = cli_json(capsys, *argv, "--json")
            assert served_ids == ran["token_ids"] and len(served_ids) == NEW


def test_bench_and_eval_run_the_tiled_model(
    capsys: pytest.CaptureFixture, tmp_path: Path, files: dict
) -> None:
    """`bench` and `eval` go through the same pipeline: exact kept counts per setting."""
    model, image = files["tiny-smolvlm"]  # 300 x 400: 3 x 4 tiles + global = 832 tokens
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / image.name).write_bytes(image.read_bytes())
    common = ["--model", str(model), "--device", "cpu", "--budgets", "full,0.2", "--no-progress"]
    bench = ["bench", *common, "--out", str(tmp_path / "bench"), "--repeats", "1"]
    bench += ["--images", str(tmp_path / "images"), "--warmup", "0", "--max-new-tokens", "1"]
    assert main([*bench, "--no-plots"]) == 0
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]
    counts = sorted((row["visual_tokens_kept"], row["visual_tokens_total"]) for row in rows)
    assert counts == [(166, 832), (832, 832)]
    evaluate = ["eval", *common, "--strategies", "hired", "--limit", "2", "--max-new-tokens", "1"]
    assert main([*evaluate, "--out", str(tmp_path / "eval")]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())["settings"]
    assert {(s["budget"], s["strategy"]) for s in summary} == {("full", "full"), ("0.2", "hired")}
    means = {
        s["budget"]: (s["mean_visual_tokens_kept"], s["mean_visual_tokens_total"]) for s in summary
    }
    assert means["full"][0] == means["full"][1] == means["0.2"][1]  # every token at 100%
    assert 0 < means["0.2"][0] <= means["0.2"][1] / 5  # 20% of each image's tokens, floored
