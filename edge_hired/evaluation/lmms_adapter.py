"""Run a `Pipeline` inside lmms-eval, the harness the HiRED paper measured its accuracy with.

lmms-eval (optional extra `lmms`) asks a model object for answers through its `lmms` base
class: `generate_until(requests)`, `loglikelihood(requests)` and
`generate_until_multi_round(requests)`, where each request's `args` are

- generate_until: (context, generation kwargs, doc_to_visual, doc_id, task, split)
- loglikelihood:  (context, doc_to_target or continuation text, doc_to_visual, doc_id, task, split)

and `self.task_dict[task][split][doc_id]` is the document `doc_to_visual` turns into images.
`PipelineLmmsMixin` implements those methods over a pipeline at one budget and strategy;
`EdgeHiredLmms` (built on first access, so importing this module never needs lmms-eval) puts
them on lmms-eval's real base class. Use it from Python:

    from lmms_eval.evaluator import simple_evaluate
    from edge_hired.evaluation.lmms_adapter import EdgeHiredLmms
    model = EdgeHiredLmms(pretrained="llava-hf/llava-v1.6-vicuna-7b-hf", budget=0.2)
    simple_evaluate(model=model, tasks=["textvqa_val"])

or, once the `lmms_eval.models` entry point names `lmms_manifest`, as `--model edge_hired
--model_args pretrained=...,budget=0.2,strategy=hired`.

Requests are answered one at a time (HiRED selects the tokens of one image); multi-round tasks
are refused rather than answered differently from the paper's protocol.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from edge_hired.errors import EdgeHiredError, InvalidArgumentError, expected
from edge_hired.evaluation.harness import Runner
from edge_hired.hired import check_strategy
from edge_hired.runtime.generation import SamplingOptions
from edge_hired.runtime.images import load_image, to_rgb
from edge_hired.runtime.pipeline import SelectionOptions
from edge_hired.runtime.sources import load_pipeline
from edge_hired.sweep import ADAPTIVE_STRATEGIES, FULL, parse_ratio

__all__ = [
    "LMMS_INSTALL_HINT",
    "MODEL_NAME",
    "PipelineLmmsMixin",
    "adapter_class",
    "continuation_logprob",
    "lmms_manifest",
    "selection_for",
]

MODEL_NAME = "edge_hired"
IMAGE_PLACEHOLDER = "<image>"
LMMS_INSTALL_HINT = (
    "lmms-eval is not installed: `pip install 'edge-hired[lmms]'`. It requires torchvision, which "
    "replaces a CPU-only torch with a CUDA build: install it where that is wanted"
)


def selection_for(budget: object, strategy: str) -> SelectionOptions:
    """Selection options of one adapter: 'full' keeps every token, adaptive strategies their own."""
    check_strategy(strategy)
    if strategy == FULL or (isinstance(budget, str) and budget.strip().lower() == FULL):
        return SelectionOptions(strategy=FULL)
    if strategy in ADAPTIVE_STRATEGIES:
        return SelectionOptions(strategy=strategy)
    return SelectionOptions(strategy=strategy, ratio=parse_ratio(budget))


def _prompt(context: str) -> str:
    """The task's text without image placeholders: the pipeline places the image itself."""
    return context.replace(IMAGE_PLACEHOLDER, "").strip()


def _stop_strings(until: object) -> list[str]:
    if until is None:
        return []
    if isinstance(until, str):
        return [until]
    if isinstance(until, (list, tuple)) and all(isinstance(u, str) for u in until):
        return list(until)
    wanted = "a string or a list of strings"
    raise InvalidArgumentError(expected("generation kwarg 'until'", wanted, until))


def _cut(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop string."""
    for stop in stops:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def sampling_from_kwargs(
    kwargs: dict[str, Any] | None, max_new_tokens: int
) -> tuple[SamplingOptions, list[str]]:
    """lmms-eval generation kwargs as sampling options plus stop strings (greedy unless asked)."""
    kwargs = dict(kwargs or {})
    if int(kwargs.get("num_beams", 1) or 1) > 1:
        raise InvalidArgumentError(expected("generation kwarg 'num_beams'", 1, kwargs["num_beams"]))
    temperature = float(kwargs.get("temperature", 0) or 0)
    sample = bool(kwargs.get("do_sample", False)) or temperature > 0
    options = SamplingOptions(
        max_new_tokens=int(kwargs.get("max_new_tokens", max_new_tokens)),
        do_sample=sample,
        temperature=temperature if sample and temperature > 0 else None,
        top_p=kwargs.get("top_p") if sample else None,
    )
    return options, _stop_strings(kwargs.get("until"))


def _one_image(visuals: object) -> Image.Image:
    """The single image of a request, as RGB."""
    items = visuals if isinstance(visuals, (list, tuple)) else [visuals]
    if len(items) != 1:
        raise InvalidArgumentError(
            expected(
                "visuals of a request",
                "exactly one image (HiRED selects the tokens of one image)",
                f"{len(items)} visuals",
            )
        )
    item = items[0]
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, (str, Path)):
        return load_image(item)
    raise InvalidArgumentError(
        expected("visual of a request", "a PIL image or an image path", type(item).__name__)
    )


@torch.inference_mode()
def continuation_logprob(
    pipeline: Any,
    image: Image.Image,
    context: str,
    continuation: str,
    selection: SelectionOptions,
) -> tuple[float, bool]:
    """log P(continuation | image, context) under the pruned visual tokens, and whether greedy
    decoding would produce exactly the continuation's tokens.

    Needs an in-process pipeline (`preprocess`, `encoder`, `select`, `input_embeddings`).
    """
    needed = ("preprocess", "encode", "select", "input_embeddings", "tokenizer")
    if not all(hasattr(pipeline, a) for a in needed):
        raise InvalidArgumentError(
            expected(
                "pipeline for loglikelihood",
                "an in-process transformers Pipeline",
                type(pipeline).__name__,
            )
        )
    from edge_hired.runtime.scoring import continuation_logprobs

    pixels, geometry = pipeline.preprocess(image)
    vision = pipeline.encode(pixels)
    chosen = pipeline.select(geometry, vision, selection)
    prompt = pipeline.input_embeddings(context, vision, chosen)
    ids = pipeline.tokenizer(continuation, add_special_tokens=False, return_tensors="pt")[
        "input_ids"
    ].to(prompt.device)
    if ids.shape[1] == 0:
        return 0.0, True
    logprobs = continuation_logprobs(pipeline, prompt, ids)
    target = ids[0]
    total = logprobs.gather(-1, target[:, None]).sum()
    return float(total), bool((logprobs.argmax(dim=-1) == target).all())


class PipelineLmmsMixin:
    """lmms-eval's request methods over a pipeline at one budget and strategy.

    Expects the attributes lmms-eval's `lmms.__init__` sets (`task_dict`, `cache_hook`, `rank`)
    and calls `_setup` from the concrete class's `__init__`.
    """

    pipeline: Runner
    selection: SelectionOptions
    max_new_tokens: int
    task_dict: dict
    cache_hook: Any
    rank: int

    def _setup(self, pipeline: Runner, budget: object, strategy: str, max_new_tokens: int) -> None:
        self.pipeline = pipeline
        self.selection = selection_for(budget, strategy)
        self.max_new_tokens = int(max_new_tokens)
        self.visual_tokens_kept: list[int] = []
        self.ttft_s: list[float] = []

    def _visual(
        self, doc_to_visual: Callable[[Any], Any], doc_id: Any, task: str, split: str
    ) -> Image.Image:
        return _one_image(doc_to_visual(self.task_dict[task][split][doc_id]))

    def _progress(self, requests: Sequence[Any], what: str) -> Any:
        return tqdm(requests, disable=self.rank != 0, desc=f"edge-hired {what}")

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        """Greedy answers (sampled if the task asks), cut at the task's stop strings."""
        answers = []
        for request in self._progress(requests, "generate_until"):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            sampling, stops = sampling_from_kwargs(gen_kwargs, self.max_new_tokens)
            image = self._visual(doc_to_visual, doc_id, task, split)
            result = self.pipeline.run(image, _prompt(context), self.selection, sampling)
            self.visual_tokens_kept.append(int(result.visual_tokens_kept))
            self.ttft_s.append(float(result.ttft_s))
            answers.append(_cut(result.text, stops))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answers[-1])
        return answers

    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        """(log-probability, is-greedy) of each request's continuation after its context."""
        scores = []
        for request in self._progress(requests, "loglikelihood"):
            context, target, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            continuation = target if isinstance(target, str) else str(target(doc))
            image = _one_image(doc_to_visual(doc))
            scores.append(
                continuation_logprob(
                    self.pipeline, image, _prompt(context), continuation, self.selection
                )
            )
            self.cache_hook.add_partial("loglikelihood", (context, continuation), scores[-1])
        return scores

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        """Not supported: refused rather than answered unlike the paper's single-round protocol."""
        raise InvalidArgumentError(
            expected(
                "lmms-eval task type",
                "generate_until or loglikelihood",
                "generate_until_multi_round",
            )
        )


def adapter_class(base: type) -> type:
    """`EdgeHiredLmms` on `base`: lmms-eval's `lmms`, or in tests a class with its interface."""

    class EdgeHiredLmms(PipelineLmmsMixin, base):  # type: ignore[misc, valid-type]
        """An edge-hired pipeline as an lmms-eval model (`--model edge_hired`)."""

        is_simple = True

        def __init__(
            self,
            pretrained: str | None = None,
            bundle: str | None = None,
            budget: object = 0.2,
            strategy: str = "hired",
            device: str = "auto",
            dtype: str | None = None,
            max_new_tokens: int = 16,
            pipeline: Runner | None = None,
            batch_size: int = 1,
            **kwargs: Any,
        ) -> None:
            # lmms.__init__ names its cache folder after `pretrained`: set it first.
            self.pretrained = pretrained or (str(bundle) if bundle else "edge-hired-tiny")
            super().__init__()
            if kwargs:
                unknown = sorted(kwargs)
                raise InvalidArgumentError(expected("model_args", "known arguments", unknown))
            if int(batch_size) != 1:
                raise InvalidArgumentError(expected("batch_size", 1, batch_size))
            if pipeline is None:
                pipeline = load_pipeline(pretrained, bundle, device, dtype)
            self._setup(pipeline, budget, strategy, max_new_tokens)

    EdgeHiredLmms.__qualname__ = "EdgeHiredLmms"
    return EdgeHiredLmms


@functools.cache
def _lmms_class() -> type:
    try:
        from lmms_eval.api.model import lmms
    except ImportError as error:
        raise EdgeHiredError(LMMS_INSTALL_HINT) from error
    return adapter_class(lmms)


def lmms_manifest() -> Any:
    """The model manifest for lmms-eval's `lmms_eval.models` entry-point group."""
    try:
        from lmms_eval.models.registry_v2 import ModelManifest
    except ImportError as error:
        raise EdgeHiredError(LMMS_INSTALL_HINT) from error
    return ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.EdgeHiredLmms")


def __getattr__(name: str) -> Any:
    """`EdgeHiredLmms` is built on first access, from the installed lmms-eval."""
    if name == "EdgeHiredLmms":
        return _lmms_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
