"""Issue 19: the bucket rule, the `--compile` decision and its place in the target."""

from __future__ import annotations

import pytest

from edge_hired.errors import InvalidArgumentError
from edge_hired.planner.buckets import Bucket, bucket_for, length_bucket, rows_bucket
from edge_hired.runtime.compile_policy import decide_compile


@pytest.mark.parametrize(
    ("positions", "bucket"),
    [(1, 256), (256, 256), (257, 512), (1000, 1024), (2048, 2048), (2049, 3072), (5000, 5120)],
)
def test_lengths_round_up_to_a_few_buckets(positions: int, bucket: int) -> None:
    assert length_bucket(positions) == bucket


@pytest.mark.parametrize(("rows", "bucket"), [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16)])
def test_rows_round_up_to_a_few_batch_sizes(rows: int, bucket: int) -> None:
    assert rows_bucket(rows) == bucket


def test_a_bucket_is_rows_by_positions_and_rejects_nothing_to_hold() -> None:
    assert bucket_for(3, 300) == Bucket(4, 512)
    with pytest.raises(InvalidArgumentError, match="expected a positive integer, got 0"):
        length_bucket(0)


@pytest.mark.parametrize(
    ("flag", "device", "compiled"),
    [("auto", "cuda", True), ("auto", "cpu", False), ("on", "cpu", True), ("off", "cuda", False)],
)
def test_auto_compiles_on_cuda_only_and_the_flag_wins(flag, device, compiled) -> None:
    assert decide_compile(flag, device)[0] is compiled


@pytest.mark.parametrize(("flag", "compiled"), [("auto", False), ("on", True)])
def test_auto_stays_eager_on_unified_memory_unless_forced(flag, compiled) -> None:
    """A Jetson: the static cache would sit beside the prefill's growing cache at the peak."""
    decided, reason = decide_compile(flag, "cuda", unified=True)
    assert decided is compiled
    assert ("unified memory" in reason) is (flag == "auto")


@pytest.mark.parametrize("flag", ["auto", "on"])
def test_linear_attention_models_decode_eagerly_whatever_the_flag(flag) -> None:
    """Qwen3.5's recurrent state is not in the static KV cache (M-RoPE alone now compiles)."""
    decided, reason = decide_compile(flag, "cuda", linear_attention=True)
    assert decided is False and "linear-attention layers (Qwen3.5)" in reason


def test_an_unknown_compile_choice_is_a_one_line_error() -> None:
    with pytest.raises(InvalidArgumentError, match="--compile: expected auto / on / off"):
        decide_compile("fast", "cpu")
