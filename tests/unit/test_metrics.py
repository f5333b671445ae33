"""Tests of `edge_hired.evaluation.metrics` against hand-computed cases of each benchmark."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_hired.errors import EdgeHiredError, InvalidArgumentError
from edge_hired.evaluation.metrics import (
    METRICS,
    anls,
    exact_match,
    get_metric,
    levenshtein,
    normalize_vqa_answer,
    relaxed_accuracy,
    vqa_accuracy,
)

# --- VQA normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two dogs.", "2 dogs"),  # number word to digit, final period dropped
        ("the cat", "cat"),  # article dropped
        ("A  Red   Car", "red car"),  # lowercase, whitespace collapsed
        ("dont", "don't"),  # contraction repaired
        ("couldnt've", "couldn't've"),  # one apostrophe missing of two
        ("lets", "lets"),  # also an English word: left alone, as in the reference
        ("10,000", "10000"),  # comma between digits vanishes
        ("10,000 people, maybe", "10000 people maybe"),  # ... and then every mark vanishes
        ("yes, it is", "yes it is"),  # a mark touching a space vanishes
        ("red,blue", "red blue"),  # a mark between words becomes a space
        ("black/white", "black white"),
        ("3.5", "3.5"),  # decimal point kept
        ("5.", "5"),
        ("girl's", "girl's"),  # apostrophe kept
        ("2:50 pm", "2:50 pm"),  # colon kept
        ("none", "0"),
        ("Ten\tApples\n", "10 apples"),
    ],
)
def test_vqa_normalisation(raw: str, normalised: str) -> None:
    assert normalize_vqa_answer(raw) == normalised


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [
        ("Two dogs.", "2 dogs"),
        ("the cat", "cat"),
        ("cat", "the cat"),
        ("dont", "don't"),
        ("10,000", "10000"),
        ("Yes.", "yes"),
    ],
)
def test_vqa_normalisation_makes_equivalent_answers_match(prediction: str, answer: str) -> None:
    assert vqa_accuracy(prediction, [answer]) == 1.0


# --- VQA accuracy -----------------------------------------------------------------------------


def ten(matching: int, answer: str = "yes", other: str = "no") -> list[str]:
    return [answer] * matching + [other] * (10 - matching)


@pytest.mark.parametrize(
    ("matching", "accuracy"),
    [
        # leave-one-out over 10 annotators, min(matches among the other 9 / 3, 1), averaged:
        (0, 0.0),
        (1, (1 * 0 / 3 + 9 * 1 / 3) / 10),  # 0.3
        (2, (2 * 1 / 3 + 8 * 2 / 3) / 10),  # 0.6
        (3, (3 * 2 / 3 + 7 * 1) / 10),  # 0.9: three humans are not quite full credit
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_vqa_accuracy_with_ten_answers(matching: int, accuracy: float) -> None:
    assert vqa_accuracy("Yes.", ten(matching)) == pytest.approx(accuracy)


def test_vqa_accuracy_normalises_the_answers_too() -> None:
    answers = ["Two", "two.", "2", "two dogs", "3", "3", "3", "3", "3", "3"]
    # three of the ten say "2": as (3, 0.9) above
    assert vqa_accuracy("2", answers) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("answers", "accuracy"),
    [
        (["cat"], 1.0),  # one reference: a match is full credit
        (["cat", "dog"], 0.5),  # k = min(3, 2) = 2
        (["cat", "dog", "cow"], 1 / 3),
        (["cat", "cat", "cow", "cow", "cow"], 2 / 3),
        (["cow"], 0.0),
    ],
)
def test_vqa_accuracy_with_fewer_answers(answers: list[str], accuracy: float) -> None:
    assert vqa_accuracy("The cat", answers) == pytest.approx(accuracy)


@pytest.mark.parametrize("answers", [[], "cat", [1, 2], None])
def test_metrics_refuse_answers_that_are_not_a_list_of_strings(answers: object) -> None:
    for metric in METRICS.values():
        with pytest.raises(InvalidArgumentError, match="answers: expected a non-empty list"):
            metric("cat", answers)  # type: ignore[arg-type]


# --- ANLS -------------------------------------------------------------------------------------


def test_levenshtein_known_distances() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("same", "same") == 0


@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=12))
def test_levenshtein_is_a_metric(a: str, b: str, c: str) -> None:
    assert levenshtein(a, b) == levenshtein(b, a)
    assert (levenshtein(a, b) == 0) == (a == b)
    assert levenshtein(a, c) <= levenshtein(a, b) + levenshtein(b, c)
    assert abs(len(a) - len(b)) <= levenshtein(a, b) <= max(len(a), len(b))


def test_anls_threshold() -> None:
    reference = "x" * 100
    assert anls("x" * 60 + "y" * 40, [reference]) == pytest.approx(0.6)  # 40 edits of 100
    assert anls("x" * 49 + "y" * 51, [reference]) == 0.0  # similarity 0.49 < 0.5
    assert anls("x" * 50 + "y" * 50, [reference]) == pytest.approx(0.5)  # kept, as the scorer


def test_anls_is_case_and_whitespace_insensitive_and_takes_the_best_answer() -> None:
    assert anls("  Hello   World ", ["hello world"]) == 1.0
    assert anls("ITC Ltd", ["itc limited", "ITC Ltd."]) == pytest.approx(1 - 1 / 8)
    assert anls("", [""]) == 1.0
    assert anls("abc", ["xyz"]) == 0.0


# --- relaxed accuracy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "answer", "score"),
    [
        ("104.9", "100", 1.0),  # 4.9 % off
        ("105.1", "100", 0.0),  # 5.1 % off
        ("95.1", "100", 1.0),
        ("94.9", "100", 0.0),
        ("-104.9", "-100", 1.0),  # relative to |answer|
        ("0.45", "45%", 1.0),  # a percent sign divides by 100
        ("45%", "0.45", 1.0),
        ("12.5%", "12%", 1.0),  # 0.125 vs 0.12: 4.2 % off
        ("45", "45%", 0.0),  # 45 vs 0.45
        (" 7 ", "7", 1.0),
        ("0", "0", 1.0),  # a zero answer is compared as text ...
        ("0.0", "0", 0.0),  # ... so only the same text matches
        ("Yes", "yes", 1.0),  # text: case-insensitive exact match
        ("yes.", "yes", 0.0),
        ("1,000", "1000", 0.0),  # not a number for the scorer: compared as text
    ],
)
def test_relaxed_accuracy(prediction: str, answer: str, score: float) -> None:
    assert relaxed_accuracy(prediction, [answer]) == score


def test_relaxed_accuracy_takes_any_answer() -> None:
    assert relaxed_accuracy("52", ["10", "50"]) == 1.0


# --- exact match and the registry -------------------------------------------------------------


def test_exact_match() -> None:
    assert exact_match("  Red ", ["blue", "red"]) == 1.0
    assert exact_match("red car", ["red  car"]) == 1.0
    assert exact_match("red.", ["red"]) == 0.0
    assert exact_match("the red", ["red"]) == 0.0


def test_registry_names_each_metric_and_refuses_unknown_names() -> None:
    assert dict(METRICS) == {
        "vqa": vqa_accuracy,
        "anls": anls,
        "relaxed": relaxed_accuracy,
        "exact": exact_match,
    }
    assert get_metric("anls") is anls
    with pytest.raises(EdgeHiredError, match="metric: expected one of vqa, anls, relaxed, exact"):
        get_metric("bleu")


@given(st.text(max_size=20), st.lists(st.text(max_size=20), min_size=1, max_size=10))
def test_every_metric_scores_within_zero_and_one(prediction: str, answers: list[str]) -> None:
    for metric in METRICS.values():
        assert 0.0 <= metric(prediction, answers) <= 1.0
    assert vqa_accuracy(prediction, [prediction] * 10) == 1.0
