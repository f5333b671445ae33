"""The one sampler: penalty -> temperature -> top-k -> top-p -> a draw from the request's seed.

Each case is built so its outcome holds by construction (scores far apart, exact sets), not by
one CPU's rounding.
"""

from __future__ import annotations

import math

import pytest
import torch

from edge_hired.errors import InvalidArgumentError
from edge_hired.runtime.sampling import (
    Sampler,
    SamplingOptions,
    keep_top_k,
    keep_top_p,
    penalized,
)

SAMPLE = SamplingOptions(do_sample=True, temperature=1.0, seed=7)


def log_probs(*probs: float) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


def draws(options: SamplingOptions, logits: torch.Tensor, n: int = 200) -> list[int]:
    sampler = Sampler(options)
    return [sampler.choose(logits) for _ in range(n)]


def test_the_same_seed_repeats_and_another_seed_differs() -> None:
    logits = log_probs(0.25, 0.25, 0.25, 0.25)
    assert draws(SAMPLE, logits) == draws(SAMPLE, logits)
    assert draws(SAMPLE, logits) != draws(SamplingOptions(do_sample=True, seed=8), logits)


def test_the_draw_ignores_the_global_generator() -> None:
    logits = log_probs(0.25, 0.25, 0.25, 0.25)
    torch.manual_seed(1)
    first = draws(SAMPLE, logits, 20)
    torch.manual_seed(2)
    assert draws(SAMPLE, logits, 20) == first


def test_top_k_keeps_the_k_highest_and_top_p_the_smallest_set_reaching_p() -> None:
    logits = log_probs(0.5, 0.3, 0.15, 0.05)
    assert torch.isfinite(keep_top_k(logits, 2)).tolist() == [True, True, False, False]
    assert torch.isfinite(keep_top_p(logits, 0.75)).tolist() == [True, True, False, False]
    assert torch.isfinite(keep_top_p(logits, 0.4)).tolist() == [True, False, False, False]
    options = SamplingOptions(do_sample=True, top_p=0.75, seed=3)
    assert set(draws(options, logits)) == {0, 1}
    assert set(draws(SamplingOptions(do_sample=True, top_k=3, seed=3), logits)) == {0, 1, 2}


def test_the_penalty_comes_before_top_k() -> None:
    # token 0 leads until it was picked; penalised (3.0 / 2 = 1.5) it falls below token 1 (2.9),
    # so top-k 1 gives token 1 next (top-k first would keep only token 0); once both were
    # picked, 1.5 beats 1.45 again
    sampler = Sampler(SamplingOptions(do_sample=True, top_k=1, repetition_penalty=2.0))
    logits = torch.tensor([3.0, 2.9, 0.0])
    assert [sampler.choose(logits) for _ in range(3)] == [0, 1, 0]
    assert penalized(torch.tensor([2.0, -2.0, 1.0]), [0, 1], 2.0).tolist() == [1.0, -4.0, 1.0]


def test_the_temperature_divides_before_top_p() -> None:
    # probabilities 0.6 / 0.4: top-p 0.5 keeps token 0 alone; at temperature 100 both are ~0.5
    # and still only token 0 reaches 0.5 first, so the draw is always 0 (p is applied after T)
    logits = log_probs(0.6, 0.4)
    hot = SamplingOptions(do_sample=True, temperature=100.0, top_p=0.5, seed=1)
    assert set(draws(hot, logits)) == {0}
    assert set(draws(SamplingOptions(do_sample=True, temperature=100.0, seed=1), logits)) == {0, 1}


def test_greedy_is_argmax_and_honours_the_penalty() -> None:
    logits = torch.tensor([0.0, 2.0, 1.0, 0.5])
    assert Sampler().choose(logits) == 1
    greedy = Sampler(SamplingOptions(repetition_penalty=4.0))
    assert [greedy.choose(logits) for _ in range(2)] == [1, 2]  # 2.0 / 4 = 0.5 < 1.0


def test_eos_waits_for_min_new_tokens() -> None:
    sampler = Sampler(SamplingOptions(), eos_ids=frozenset({1}), min_new_tokens=2)
    logits = torch.tensor([0.0, 5.0, 1.0])
    assert [sampler.choose(logits) for _ in range(3)] == [2, 2, 1]


@pytest.mark.parametrize(
    "options",
    [
        {"max_new_tokens": 0},
        {"do_sample": True, "temperature": 0.0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_k": 0},
        {"repetition_penalty": -1.0},
    ],
)
def test_bad_options_are_one_line_errors(options: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        SamplingOptions(**options)
