"""SigLIP towers (no CLS): llava-interleave-style LLaVA-1.5 and LLaVA-OneVision, in-process.

At 100% the pipeline is the stock model (generated ids; OneVision's packed features bit for
bit); the attention-received signal equals an eager `output_attentions` run; HiRED keeps exactly
its budget, the top-B by attention received, with OneVision's split of HIRED.md steps 1-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlavaForConditionalGeneration, LlavaOnevisionForConditionalGeneration

from edge_hired.hired.budget import largest_remainder
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from tests.helpers import (
    PROMPT,
    stock_generate,
    stock_inputs,
    stock_onevision_inputs,
    textured_image,
)

pytestmark = pytest.mark.integration

GREEDY = SamplingOptions(max_new_tokens=6)
SMALL, LARGE = (500, 700), (1080, 1920)  # OneVision: 2x2 grid as is / 3x5 grid shrunk


@pytest.fixture(scope="module")
def siglip_pipeline(tiny_siglip_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_siglip_dir), device="cpu")


@pytest.fixture(scope="module")
def onevision_pipeline(tiny_onevision_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(str(tiny_onevision_dir), device="cpu")


@pytest.fixture(scope="module")
def onevision_stock(tiny_onevision_dir: Path):
    return LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_onevision_dir).eval()


def eager_received(model, pixels: torch.Tensor, layers: tuple[int, ...]):
    """Test-only reference: full eager attention maps, mean over queries, and the features."""
    model.config.vision_config._attn_implementation = "eager"
    with torch.inference_mode():
        out = model.model.vision_tower(pixels, output_attentions=True, output_hidden_states=True)
    model.config.vision_config._attn_implementation = "sdpa"
    rows = [out.attentions[layer].mean(dim=2) for layer in layers]
    return rows, out.hidden_states[model.config.vision_feature_layer]


def test_siglip_llava_full_budget_matches_stock(siglip_pipeline, tiny_siglip_dir) -> None:
    stock = LlavaForConditionalGeneration.from_pretrained(tiny_siglip_dir).eval()
    image = textured_image(480, 640, seed=7)
    expected = stock_generate(stock, stock_inputs(tiny_siglip_dir, image))
    for options in (SelectionOptions(strategy="full"), SelectionOptions(tokens=729)):
        result = siglip_pipeline.run(image, PROMPT, options, GREEDY)
        assert result.grid == [1, 1] and result.visual_tokens_total == 729
        assert result.signal == "received"
        assert result.token_ids == expected


def test_received_rows_equal_eager_attention_maps(siglip_pipeline, tiny_siglip_dir) -> None:
    pixels, _ = siglip_pipeline.preprocess(textured_image(400, 300, seed=2))
    vision = siglip_pipeline.encode(pixels)
    plan = siglip_pipeline.facts.layers
    assert (plan.l_init, plan.l_final, plan.layers_to_run) == (0, 3, 4)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_siglip_dir).eval()
    (init, final), features = eager_received(model, pixels, (plan.l_init, plan.l_final))
    assert vision.signal == "received" and vision.cls_init.shape == (1, 4, 729)
    assert (vision.cls_init - init).abs().max() <= 1e-5
    assert (vision.cls_final - final).abs().max() <= 1e-5
    assert (vision.features - features).abs().max() <= 1e-5
    assert vision.keys_final.shape == (1, 729, 32)


#: The tokens (of 729) the designed checkpoint makes receive the most attention in its last layer.
HIGH = np.sort(np.random.default_rng(0).permutation(729)[:145])
#: Query scale of the designed last layer: HIGH tokens get e^(2 x ALPHA x 4 / sqrt(8)) ~ 290x
#: the attention of the others from head 0 (the other heads attend uniformly).
ALPHA = 2.0


def designed(model_dir: Path, tmp_path: Path) -> Path:
    """The tiny SigLIP checkpoint with attention received set by construction, on any CPU.

    Patch embeddings and every branch before the last layer are zeroed, so the last layer sees
    the position embeddings alone: +-1 in channels 0 and 1 (HIGH tokens +1, -1; the others
    -1, +1), mean 0 and the same variance for every token, so its layer norm is one scale for
    all. Head 0's query is the constant ALPHA on dimension 0 and its key reads channel 0: HIGH
    tokens receive e^(2 x logit) more attention than the rest, a gap far above any rounding.
    """
    model = LlavaForConditionalGeneration.from_pretrained(model_dir)
    tower = model.model.vision_tower
    vision = getattr(tower, "vision_model", tower)
    sign = -torch.ones(729)
    sign[torch.from_numpy(HIGH)] = 1.0
    with torch.no_grad():
        embeddings = vision.embeddings
        embeddings.patch_embedding.weight.zero_()
        embeddings.patch_embedding.bias.zero_()
        position = torch.zeros_like(embeddings.position_embedding.weight)
        position[:, 0], position[:, 1] = sign, -sign
        embeddings.position_embedding.weight.copy_(position)
        for layer in vision.encoder.layers[:-1]:
            for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        last = vision.encoder.layers[-1]
        last.layer_norm1.weight.fill_(1.0)
        last.layer_norm1.bias.zero_()
        for proj in (last.self_attn.q_proj, last.self_attn.k_proj):
            proj.weight.zero_()
            proj.bias.zero_()
        last.self_attn.q_proj.bias[0] = ALPHA
        last.self_attn.k_proj.weight[0, 0] = 1.0
    target = tmp_path / "designed"
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json"):
        (target / name).write_bytes((model_dir / name).read_bytes())
    (target / "chat_template.jinja").write_bytes((model_dir / "chat_template.jinja").read_bytes())
    return target


def test_hired_at_20_percent_keeps_the_top_b_by_attention_received(
    tiny_siglip_dir: Path, tmp_path: Path
) -> None:
    model_dir = designed(tiny_siglip_dir, tmp_path)
    pipeline = Pipeline.from_pretrained(str(model_dir), device="cpu")
    image = textured_image(384, 384, seed=9)
    pixels, _ = pipeline.preprocess(image)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    (final,), _ = eager_received(model, pixels, (3,))
    scores = final.sum(dim=1)[0].double().numpy()
    budget = int(0.2 * 729)  # floor(r x N) = 145
    ranked = np.argsort(-scores, kind="stable")
    assert sorted(ranked[:budget].tolist()) == HIGH.tolist()  # the designed top-B, eagerly
    ours = pipeline.encode(pixels).cls_final.sum(dim=1)[0].double().numpy()
    noise = np.abs(ours - scores).max()
    assert scores[ranked[budget - 1]] - scores[ranked[budget]] > 100 * noise  # no tie at the cut
    result = pipeline.run(image, PROMPT, SelectionOptions(ratio=0.2), GREEDY)
    assert result.visual_tokens_kept == result.budget_tokens == budget
    assert result.kept[0] == HIGH.tolist()


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_onevision_full_budget_matches_stock(
    size, onevision_pipeline, onevision_stock, tiny_onevision_dir
) -> None:
    image = textured_image(*size, seed=sum(size))
    inputs = stock_onevision_inputs(tiny_onevision_dir, image)
    expected = stock_generate(onevision_stock, inputs)
    for options in (SelectionOptions(strategy="full"), SelectionOptions(tokens=100_000)):
        result = onevision_pipeline.run(image, PROMPT, options, GREEDY)
        assert result.llm_input_tokens == inputs["input_ids"].shape[1]
        assert result.token_ids == expected


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_onevision_full_budget_features_are_the_stock_ones_bit_for_bit(
    size, onevision_pipeline, onevision_stock, tiny_onevision_dir
) -> None:
    pipe = onevision_pipeline
    image = textured_image(*size, seed=1)
    pixels, geometry = pipe.preprocess(image)
    assert (geometry.resized is not None) == (size == LARGE)
    vision = pipe.encode(pixels)
    embeds = pipe.input_embeddings(
        PROMPT, vision, pipe.select(geometry, vision, SelectionOptions())
    )
    inputs = stock_onevision_inputs(tiny_onevision_dir, image)
    with torch.inference_mode():
        stock = onevision_stock.model.get_image_features(
            pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"]
        ).pooler_output[0]
    start = int(
        np.flatnonzero(inputs["input_ids"][0].numpy() == pipe.parts.facts.image_token_id)[0]
    )
    assert torch.equal(embeds[0, start : start + len(stock)], stock)


def hand_split(geometry, s_init_full: np.ndarray, budget: int) -> list[int]:
    """HIRED.md steps 1-3 written out: full share, highlighted patches per tile, remainders."""
    n = geometry.tokens_per_partition
    valid = geometry.valid_counts()
    b_full = min(budget // 2, n)
    b_sub = budget - b_full
    highlighted = np.argsort(-s_init_full, kind="stable")[: n // 2]
    owners = geometry.full_to_sub_image()[highlighted]
    counts = np.bincount(owners, minlength=geometry.num_partitions)[1:]
    return [b_full, *largest_remainder(b_sub, counts, valid[1:]).tolist()]


@pytest.mark.parametrize("size", [SMALL, LARGE])
def test_onevision_hired_at_20_percent_follows_the_budget_split(
    size, onevision_pipeline, onevision_stock
) -> None:
    image = textured_image(*size, seed=4)
    pixels, geometry = onevision_pipeline.preprocess(image)
    (init,), _ = eager_received(onevision_stock, pixels, (0,))
    fed = int(geometry.valid_counts().sum())  # what the stock model feeds
    # a ratio is a share of (1 + m) x N, or of what is fed once anyres_max shrinks the grid
    base = fed if geometry.resized is not None else geometry.num_partitions * 729
    budget = min(int(0.2 * base), fed)
    result = onevision_pipeline.run(image, PROMPT, SelectionOptions(ratio=0.2), GREEDY)
    assert result.visual_tokens_kept == result.budget_tokens == budget
    assert result.partition_budgets == hand_split(geometry, init.sum(1)[0].numpy(), budget)
    valid = geometry.valid_mask()
    for part, kept in enumerate(result.kept):
        assert len(kept) == result.partition_budgets[part] and valid[part, kept].all()
    assert result.llm_input_tokens < stock_onevision_len(geometry)


def stock_onevision_len(geometry) -> int:
    """Visual tokens of the stock model: every valid token plus a newline per visible row."""
    return int(geometry.valid_counts().sum()) + geometry.visible_grid()[0]


@pytest.mark.parametrize("strategy", ["spatial", "random", "prumerge", "prumerge+", "hired-ref"])
def test_every_strategy_runs_on_the_received_signal(strategy, onevision_pipeline) -> None:
    image = textured_image(*LARGE, seed=6)
    result = onevision_pipeline.run(
        image, PROMPT, SelectionOptions(strategy=strategy, ratio=0.1), GREEDY
    )
    assert result.signal == "received"
    assert 0 < result.visual_tokens_kept < result.visual_tokens_total
    assert len(result.token_ids) == 6
