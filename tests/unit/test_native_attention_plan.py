"""The encoder line of a native-resolution (Qwen-VL) bundle counts the ONNX graph's attention.

The exported graph computes attention as ONNX ops, one query chunk at a time, so one block holds
heads x ceil(N / chunks) x N scores at the largest image's N patches; an older bundle's graph
(no chunk count recorded) holds whole [heads, N, N] maps; an in-process plan (SDPA) holds none.
Every figure below is counted by hand from the published shapes.
"""

from __future__ import annotations

from typing import Any

from edge_hired.bundle.manifest import Manifest
from edge_hired.facts.config_inputs import inputs_from_config
from edge_hired.models import reference_configs as ref
from edge_hired.planner.arithmetic import MemoryCap, plan_budget, predict_lines
from edge_hired.planner.costs import CostKind, attention_peak_bytes
from edge_hired.planner.inputs import PlanInputs, PlanRequest
from edge_hired.profiles import load_profile
from edge_hired.units import GIB

CPU = PlanRequest(allocator="cpu")
# Qwen3-VL-2B's tower at the planned 1344 x 1344 px: 42 x 42 merge units = 7,056 patches.
PATCHES = 7056
# The linear live set: 7,056 patches x (3 x 4,096 + 7.5 x 1,024) elements x 2 B, x 1.4 (CPU).
LINEAR = int(7056 * 19968 * 2 * 1.4)  # 394,503,782


def native_manifest(chunks: int, dtype: str = "float16", **vision: Any) -> Manifest:
    """A Qwen3-VL-2B-shaped bundle (16 heads, patch 16, merge 2) with the given graph facts."""
    fields = dict(
        family="qwen3_vl",
        crop_size=0,
        patch_size=16,
        tokens_per_partition=0,
        num_heads=16,
        hidden_size=1024,
        intermediate_size=4096,
        vision_feature_layer=-1,
        layers_in_graph=24,
        l_init=23,
        l_final=23,
        pinpoints=[],
        image_token_id=151655,
        encoder_bytes=800 * 2**20,
        activation_bytes_per_partition=0,
        dtype=dtype,
        signal="received",
        spatial_merge=2,
        min_pixels=65536,
        max_pixels=16777216,
        position_grid_side=48,
        deepstack_outputs=3,
        attention_query_chunks=chunks,
    )
    llm = dict(
        architecture="Qwen3VLForConditionalGeneration",
        num_layers=28,
        num_kv_heads=8,
        head_dim=128,
        hidden_size=2048,
        intermediate_size=6144,
        vocab_size=151936,
        max_position_embeddings=262144,
        compute_dtype="float16",
        quantization="none",
        weight_bytes=3 * 2**30,
        projector_bytes=0,
    )
    data = {"schema_version": 1, "source": {"model_id": "qwen3-vl-2b"}, "versions": {}}
    return Manifest.from_dict(
        {**data, "vision": {**fields, **vision}, "llm": llm, "parity": {}}, "test"
    )


def encoder_line(inputs: PlanInputs) -> int:
    lines = predict_lines(inputs, load_profile("cpu"), CPU, 100)
    [line] = [line for line in lines if line.kind is CostKind.ENCODER_ACTIVATIONS]
    return line.bytes


def test_a_chunked_bundle_adds_one_chunk_of_scores() -> None:
    inputs = PlanInputs.from_manifest(native_manifest(chunks=16))
    assert inputs.vision.tokens_per_partition == PATCHES
    # 16 heads x ceil(7,056 / 16) = 441 query rows x 7,056 keys x 8 B (fp16 graph)
    assert attention_peak_bytes(inputs) == 16 * 441 * 7056 * 8 == 398_297_088
    assert encoder_line(inputs) == LINEAR + 398_297_088


def test_an_older_bundle_holds_whole_maps() -> None:
    inputs = PlanInputs.from_manifest(native_manifest(chunks=0))
    assert inputs.vision.attention_query_chunks == 1
    # 16 heads x 7,056 x 7,056 x 8 B: 5.9 GiB, more than an 8 GB board can give the encoder
    assert attention_peak_bytes(inputs) == 16 * 7056 * 7056 * 8 == 6_372_753_408
    assert encoder_line(inputs) == LINEAR + 6_372_753_408


def test_windowed_blocks_cost_more_per_score() -> None:
    # Qwen2.5-VL-shaped (patch 14, 112 px windows): 48 x 48 units = 9,216 patches, fp32 graph
    inputs = PlanInputs.from_manifest(
        native_manifest(chunks=16, dtype="float32", patch_size=14, window_size=112)
    )
    assert inputs.vision.tokens_per_partition == 9216
    assert attention_peak_bytes(inputs) == 16 * 576 * 9216 * 18 == 1_528_823_808


def test_an_in_process_plan_keeps_the_linear_model() -> None:
    inputs = inputs_from_config(ref.qwen3_vl_2b_config(), "none", "float16")
    assert inputs.vision.tokens_per_partition == PATCHES
    assert inputs.vision.attention_query_chunks == 0 and attention_peak_bytes(inputs) == 0
    assert encoder_line(inputs) == LINEAR


def test_the_plan_says_what_it_assumed() -> None:
    inputs = PlanInputs.from_manifest(native_manifest(chunks=16))
    plan = plan_budget(inputs, load_profile("cpu"), CPU, MemoryCap(64 * GIB, "test"))
    assert (
        "encoder attention: 16 heads x 441 query rows x 7056 keys (7056 patches in 16 query "
        "chunks) x 8 B (float16 graph) = 379.8 MiB, one block at a time" in plan.reasons
    )
    [line] = [line for line in plan.lines if line.kind is CostKind.ENCODER_ACTIVATIONS]
    assert line.note.endswith("+ one block's attention scores 379.8 MiB")
