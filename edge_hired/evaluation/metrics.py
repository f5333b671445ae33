"""Answer scores of the benchmarks the HiRED paper reports, one function per metric.

Every metric has the signature `metric(prediction, answers) -> float in [0, 1]` and is listed in
`METRICS` under the name the CLI takes (`--metric vqa|anls|relaxed|exact`).

- `vqa_accuracy`: VQAv2's accuracy, min(#humans who gave the answer / 3, 1), averaged over the
  10 leave-one-out subsets of 9 annotators when there are 10 answers (visualqa.org/evaluation),
  after VQA's answer normalisation (`normalize_vqa_answer`), applied to prediction and answers.
- `anls`: DocVQA's Average Normalized Levenshtein Similarity of one question (Biten et al.,
  ICCV 2019, and the Robust Reading Competition's scoring script).
- `relaxed_accuracy`: ChartQA's relaxed accuracy (Masry et al. 2022, section 5.1, following
  Methani et al. 2020): numbers within 5 % of the answer count, other answers must match.
- `exact_match`: the answer, case- and whitespace-insensitively, and nothing else.

Pure Python; no torch, no files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from edge_hired.errors import InvalidArgumentError, expected

__all__ = [
    "ANLS_THRESHOLD",
    "METRICS",
    "RELAXED_TOLERANCE",
    "Metric",
    "anls",
    "exact_match",
    "get_metric",
    "levenshtein",
    "normalize_vqa_answer",
    "relaxed_accuracy",
    "vqa_accuracy",
]

Metric = Callable[[str, Sequence[str]], float]

#: VQA collects 10 answers per question; with 10, accuracy is averaged over the 10 subsets of 9.
VQA_ANNOTATORS = 10
#: Humans that must agree for full credit.
VQA_AGREEMENT = 3
ANLS_THRESHOLD = 0.5
RELAXED_TOLERANCE = 0.05

# --- VQA answer normalisation ----------------------------------------------------------------
# The rules of visualqa.org/evaluation.html as the EvalAI challenge scorer (and lmms-eval, which
# the paper used) implement them: lowercase; drop periods except decimal points; number words to
# digits; drop articles; restore the apostrophe of contractions; punctuation other than the
# apostrophe and colon becomes a space, or vanishes when it touches a space or when the text
# holds a digit-comma-digit group ("10,000" -> "10000").

_NUMBER_WORDS = MappingProxyType(
    {
        "none": "0",
        "zero": "0",
        "one": "1",
        "two": "2",
        "three": "3",
        "four": "4",
        "five": "5",
        "six": "6",
        "seven": "7",
        "eight": "8",
        "nine": "9",
        "ten": "10",
    }
)
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_DIGIT_COMMA = re.compile(r"(?<=\d),+(?=\d)")
# The reference pattern is "(?!<=\d)(\.)(?!\d)": its look-behind is malformed (a look-ahead for
# the text "<=" plus a digit, which never matches at a period), so what it does is this:
_PERIOD = re.compile(r"\.(?!\d)")

# Contractions the scorer repairs, written with their apostrophes. A word matches when it is
# the contraction with exactly one apostrophe left out ("dont" -> "don't", "couldnt've" ->
# "couldn't've"); the reference table is exactly that rule over this list. Left out as in the
# reference: words that are also English without the apostrophe ("its", "were", "lets", "shed",
# "ill", "well"), and the "I" forms, whose capitalised keys never match the lowercased words.
# One entry of the reference runs backwards ("somebody'd" -> "somebodyd"); here it runs the
# documented way. Both spellings still normalise to one form, so no score changes.
_CONTRACTED_WORDS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've "
    "hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am "
    "mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at "
    "shan't she'd've should've shouldn't shouldn't've somebody'd somebody'd've somebody'll "
    "somebody's someone'd someone'd've someone'll someone's something'd something'd've "
    "something'll that's there'd there'd've there're there's they'd they'd've they'll they're "
    "they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd "
    "where's where've who'd who'd've who'll who's who've why'll why're why's won't would've "
    "wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've"
)
_CONTRACTED = tuple(_CONTRACTED_WORDS.split())


def _missing_one_apostrophe(word: str) -> list[str]:
    """`word` with each one of its apostrophes left out."""
    spots = [i for i, char in enumerate(word) if char == "'"]
    return [word[:i] + word[i + 1 :] for i in spots]


_CONTRACTIONS = MappingProxyType(
    {variant: word for word in _CONTRACTED for variant in _missing_one_apostrophe(word)}
)


def _strip_punctuation(text: str) -> str:
    """Punctuation to spaces, or to nothing where it touches a space or in '10,000'-like text."""
    vanish_all = _DIGIT_COMMA.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        touches_space = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if vanish_all or touches_space else " ")
    return _PERIOD.sub("", out)


def _digits_articles_contractions(text: str) -> str:
    """Lowercase words; number words to digits, articles dropped, contractions repaired."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def normalize_vqa_answer(text: str) -> str:
    """VQA's answer processing: 'Two dogs.' -> '2 dogs', 'the cat' -> 'cat', '10,000' -> '10000'."""
    flat = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_strip_punctuation(flat))


def _check_answers(answers: Sequence[str]) -> list[str]:
    """A non-empty list of strings, else InvalidArgumentError."""
    if isinstance(answers, str) or not answers or not all(isinstance(a, str) for a in answers):
        raise InvalidArgumentError(expected("answers", "a non-empty list of strings", answers))
    return list(answers)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of `prediction` against the human `answers`.

    With 10 answers (VQAv2, TextVQA): the mean over the 10 subsets of 9 annotators of
    min(matches in the subset / 3, 1), as the official scorer computes it. With fewer answers
    there are no such subsets: min(matches / k, 1) with k = min(3, number of answers), so a
    question with one reference answer is scored 1 for a match.
    """
    refs = [normalize_vqa_answer(a) for a in _check_answers(answers)]
    pred = normalize_vqa_answer(prediction)
    hits = [ref == pred for ref in refs]
    if len(refs) == VQA_ANNOTATORS:
        total = sum(hits)
        subsets = [min(1.0, (total - hit) / VQA_AGREEMENT) for hit in hits]
        return sum(subsets) / len(subsets)
    return min(1.0, sum(hits) / min(VQA_AGREEMENT, len(refs)))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each of cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _anls_text(text: str) -> str:
    """Case-folded, stripped, inner whitespace collapsed (as the DocVQA scorer does)."""
    return " ".join(text.strip().lower().split())


def _similarity(prediction: str, answer: str) -> float:
    """1 - normalised Levenshtein distance; two empty strings are identical."""
    longest = max(len(prediction), len(answer))
    return 1.0 if longest == 0 else 1.0 - levenshtein(prediction, answer) / longest


def anls(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """DocVQA ANLS of one question: the best similarity over `answers`, 0 below `threshold`.

    Similarity is 1 - Levenshtein(pred, answer) / max(len(pred), len(answer)) on lowercased,
    whitespace-normalised text. Like the competition's scoring script (and lmms-eval), a
    similarity of exactly 0.5 is kept; only values below the threshold become 0.
    """
    pred = _anls_text(prediction)
    best = max(_similarity(pred, _anls_text(a)) for a in _check_answers(answers))
    return best if best >= threshold else 0.0


def _as_number(text: str) -> float | None:
    """A finite float; 'N%' reads as N / 100; None for anything else (like ChartQA's scorer)."""
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _relaxed_match(prediction: str, answer: str, tolerance: float) -> bool:
    """Within `tolerance` relative error for a non-zero numeric answer, else equal text."""
    pred_value, answer_value = _as_number(prediction), _as_number(answer)
    if pred_value is not None and answer_value:
        return abs(pred_value - answer_value) / abs(answer_value) <= tolerance
    return prediction.strip().lower() == answer.strip().lower()


def relaxed_accuracy(
    prediction: str, answers: Sequence[str], tolerance: float = RELAXED_TOLERANCE
) -> float:
    """ChartQA relaxed accuracy: 1 if any answer matches within 5 % (numbers) or exactly."""
    return float(any(_relaxed_match(prediction, a, tolerance) for a in _check_answers(answers)))


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1 if the prediction equals an answer, ignoring case and surrounding/repeated whitespace."""
    pred = _anls_text(prediction)
    return float(any(pred == _anls_text(a) for a in _check_answers(answers)))


METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        "vqa": vqa_accuracy,
        "anls": anls,
        "relaxed": relaxed_accuracy,
        "exact": exact_match,
    }
)


def get_metric(name: str) -> Metric:
    """The metric called `name`, or InvalidArgumentError listing the known names."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            expected("metric", f"one of {', '.join(METRICS)}", name)
        ) from None
