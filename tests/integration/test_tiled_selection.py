"""HiRED at 20% on InternVL / SmolVLM through `Pipeline.run`, on towers designed by hand.

The towers are rewritten so the two signals are known by construction on any CPU: pixel
content and every residual branch are zeroed, so each layer sees the position embeddings alone.
Each LLM token's patch block carries the same unit vector (a, -a, b, -b, c, -c, 0, ...):
layer 0's head 0 reads b (its key) against a constant query, the last layer's head 0 reads a;
the other heads attend uniformly. a and b take distinct levels (two seeded permutations), so
the layer-0 signal (which tiles get budget) and the feature-layer signal (which tokens each
partition keeps) rank every token with a gap of ~2% in attention, far above float rounding.
The test computes the expected budgets and tokens itself, following HIRED.md step by step, from
the *eager* attention maps (`output_attentions=True`) of the stock tower.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import InternVLForConditionalGeneration, SmolVLMForConditionalGeneration

from edge_hired.models.tiny import build_checkpoint
from edge_hired.runtime.pipeline import Pipeline, SamplingOptions, SelectionOptions
from tests.integration.test_tiles_reference import noise

ALPHA = 8.0  # head 0's query on dimension 0: logits 11 x a / ... (gaps of ~2% per level)
LOW, HIGH = 0.1, 0.5  # the range of a and b (c = sqrt(1 - a^2 - b^2) keeps the norm at 1)
GREEDY = SamplingOptions(max_new_tokens=2)
CASES = {  # preset -> (model class, image size, grid)
    "tiny-internvl": (InternVLForConditionalGeneration, (448, 1344), (1, 3)),
    "tiny-smolvlm": (SmolVLMForConditionalGeneration, (300, 400), (3, 4)),
}


def levels(n_tokens: int, seed: int) -> np.ndarray:
    """Distinct values in [LOW, HIGH], one per LLM token, in a seeded order."""
    ranks = np.random.default_rng(seed).permutation(n_tokens)
    return LOW + (HIGH - LOW) * ranks / (n_tokens - 1)


def position_table(side: int, merge: int, width: int) -> torch.Tensor:
    """[side^2, width] position embeddings: every patch carries its token's (a, b, c) vector."""
    n = side // merge
    a, b = levels(n * n, 1), levels(n * n, 2)
    token = (np.arange(side)[:, None] // merge) * n + np.arange(side)[None, :] // merge
    a, b = a[token.reshape(-1)], b[token.reshape(-1)]
    c = np.sqrt(1 - a * a - b * b)
    table = np.zeros((side * side, width))
    for channel, value in enumerate((a, b, c)):
        table[:, 2 * channel], table[:, 2 * channel + 1] = value, -value
    return torch.tensor(table, dtype=torch.float32)


def read_channel(layer_norm, query, key, channel: int) -> None:  # type: ignore[no-untyped-def]
    """Head 0: constant query ALPHA on dim 0, key = the normed hidden channel `channel`."""
    layer_norm.weight.fill_(1.0)
    layer_norm.bias.zero_()
    for proj in (query, key):
        proj.weight.zero_()
        proj.bias.zero_()
    query.bias[0] = ALPHA
    key.weight[0, channel] = 1.0


def design_internvl(model: torch.nn.Module) -> None:
    tower = model.model.vision_tower
    embeddings, layers = tower.embeddings, tower.encoder.layer
    embeddings.patch_embeddings.projection.weight.zero_()
    embeddings.patch_embeddings.projection.bias.zero_()
    embeddings.cls_token.zero_()
    table = position_table(32, 2, embeddings.position_embeddings.shape[-1])
    embeddings.position_embeddings[0, 1:] = table
    embeddings.position_embeddings[0, 0] = table[0]
    for layer in layers:
        layer.lambda_1.zero_()
        layer.lambda_2.zero_()
    for layer, channel in ((layers[0], 2), (layers[-1], 0)):
        attention = layer.attention
        read_channel(layer.layernorm_before, attention.q_proj, attention.k_proj, channel)


def design_smolvlm(model: torch.nn.Module) -> None:
    tower = model.model.vision_model
    embeddings, layers = tower.embeddings, tower.encoder.layers
    embeddings.patch_embedding.weight.zero_()
    embeddings.patch_embedding.bias.zero_()
    embeddings.position_embedding.weight.copy_(
        position_table(32, 4, embeddings.position_embedding.weight.shape[-1])
    )
    for layer in layers:
        for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
    for layer, channel in ((layers[0], 2), (layers[-1], 0)):
        attention = layer.self_attn
        read_channel(layer.layer_norm1, attention.q_proj, attention.k_proj, channel)


@pytest.fixture(scope="module")
def designed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiled-designed")
    out = {}
    for name, (model_cls, _, _) in CASES.items():
        source = build_checkpoint(name, root / f"{name}-source")
        design = design_internvl if name == "tiny-internvl" else design_smolvlm
        out[name] = rewritten(model_cls, source, root / name, design)
    return out


def rewritten(model_cls: type, source: Path, target: Path, change) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the checkpoint at `source` with `change(model)` applied to its weights."""
    model = model_cls.from_pretrained(source)
    with torch.no_grad():
        change(model)
    model.save_pretrained(target)
    for path in source.iterdir():
        if path.suffix != ".safetensors" and path.name != "config.json":
            shutil.copy(path, target / path.name)
    return target


def sharpen(model: torch.nn.Module) -> None:
    """Queries x 100 and a non-zero CLS token: random-init attention is near uniform (InternVL's
    CLS starts at zero, so its layer-0 row is exactly uniform); now images differ clearly."""
    tower = getattr(model.model, "vision_tower", None) or model.model.vision_model
    if hasattr(tower.embeddings, "cls_token"):
        cls = torch.randn(
            tower.embeddings.cls_token.shape, generator=torch.Generator().manual_seed(0)
        )
        tower.embeddings.cls_token.copy_(cls)
    for name, module in tower.named_modules():
        if name.endswith("q_proj"):
            module.weight.mul_(100.0)


def eager_signals(name: str, directory: Path, pixels: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Layer 0 and last-layer per-patch signals [images, patches] from eager attention maps."""
    model_cls = CASES[name][0]
    model = model_cls.from_pretrained(directory, attn_implementation="eager").eval()
    tower = model.model.vision_tower if name == "tiny-internvl" else model.model.vision_model
    with torch.no_grad():
        maps = tower(pixel_values=pixels, output_attentions=True).attentions
    if name == "tiny-internvl":  # the CLS row at the patch keys
        rows = [m[:, :, 0, 1:] for m in (maps[0], maps[-1])]
    else:  # attention received: mean over all queries
        rows = [m.mean(dim=2) for m in (maps[0], maps[-1])]
    return tuple(r.sum(dim=1).double().numpy() for r in rows)


def blocks(signal: np.ndarray, merge: int) -> np.ndarray:
    """[images, tokens]: a per-patch signal summed over each token's merge x merge block."""
    images, patches = signal.shape
    side = round(patches**0.5)
    n = side // merge
    return signal.reshape(images, n, merge, n, merge).sum(axis=(2, 4)).reshape(images, n * n)


def largest_remainder(scores: np.ndarray, total: int) -> list[int]:
    """HIRED.md step 3 without caps: floor of the quotas, then +1 by largest remainder."""
    quotas = scores * total / scores.sum()
    shares = np.floor(quotas).astype(int)
    for p in sorted(range(len(scores)), key=lambda p: (-(quotas[p] - shares[p]), p)):
        if shares.sum() == total:
            break
        shares[p] += 1
    return shares.tolist()


@pytest.mark.parametrize("name", list(CASES))
def test_hired_at_20_percent_keeps_the_budget_split_and_top_tokens_of_eager_attention(
    designed: dict[str, Path], name: str
) -> None:
    _, size, grid = CASES[name]
    pipeline = Pipeline.from_pretrained(str(designed[name]), device="cpu", dtype="float32")
    image = noise(*size)
    pixels, geometry = pipeline.preprocess(image)
    assert geometry.grid == grid
    merge, n, parts = geometry.merge, geometry.n_side, geometry.num_partitions
    init, final = (
        np.roll(blocks(s, merge), 1, axis=0) for s in eager_signals(name, designed[name], pixels)
    )
    tokens = n * n

    budget = parts * tokens // 5  # floor(0.2 x (1 + m) x N)
    full = min(budget // 2, tokens)
    top = np.argsort(-init[0], kind="stable")[: tokens // 2]  # k = floor((1 - alpha) N)
    rows, cols = grid
    centre = 2 * np.arange(n) + 1
    tile = 1 + ((centre * rows) // (2 * n))[top // n] * cols + ((centre * cols) // (2 * n))[top % n]
    content = np.bincount(tile, minlength=parts)[1:]
    shares = largest_remainder(content.astype(float), budget - full)
    assert max(shares) <= tokens  # no cap needed: the worked-out split is the whole rule
    expected_kept = [
        sorted(np.argsort(-final[p], kind="stable")[:b].tolist())
        for p, b in enumerate([full, *shares])
    ]

    result = pipeline.run(image, "What is this?", SelectionOptions(ratio=0.2), GREEDY)
    assert result.visual_tokens_kept == result.budget_tokens == budget
    assert result.partition_budgets == [full, *shares]
    assert result.kept == expected_kept

    vision = pipeline.encode(pixels)  # our O(N) rows agree with eager far inside the gaps
    ours = blocks(vision.cls_final.sum(dim=1).double().numpy(), merge)
    noise_level = np.abs(ours - final).max()
    ordered = np.sort(final, axis=1)
    assert np.diff(ordered, axis=1).min() > 100 * noise_level  # every rank is separated


@pytest.mark.parametrize("name", list(CASES))
def test_signal_rows_are_the_eager_maps_in_partition_order(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    """On a random-weight tower with sharp attention (every image differs): global view first."""
    root = tmp_path_factory.mktemp("tiled-rows")
    source = build_checkpoint(name, root / f"{name}-source")
    directory = rewritten(CASES[name][0], source, root / name, sharpen)
    pipeline = Pipeline.from_pretrained(str(directory), device="cpu", dtype="float32")
    pixels, geometry = pipeline.preprocess(noise(*CASES[name][1], seed=5))
    vision = pipeline.encode(pixels)
    init, final = eager_signals(name, directory, pixels)
    order = np.roll(np.arange(geometry.num_partitions), 1)  # stock image of each partition
    assert order[0] == geometry.num_partitions - 1  # the global view is the stock last image
    for ours, eager in ((vision.cls_init, init), (vision.cls_final, final)):
        np.testing.assert_allclose(ours.sum(dim=1).double().numpy(), eager[order], atol=1e-6)
    for eager in (init, final):  # images differ by far more than the tolerance: order is checked
        assert np.abs(eager[0] - eager[1:]).max(axis=1).min() > 1e-4
