"""Tests of the lmms-eval adapter (`edge_hired.evaluation.lmms_adapter`).

lmms-eval cannot be installed in the project's environment (it requires torchvision, which would
replace the CPU torch with a CUDA build), so most tests run the adapter on `StandInLmms` and
`StandInInstance`: the parts of lmms-eval 0.7.3's `lmms_eval/api/model.py` (`lmms`: the three
abstract request methods, `_rank`, `_world_size`, `cache_hook`, `task_dict`, `rank`) and
`lmms_eval/api/instance.py` (`Instance.args`) that a simple model touches, with the request
tuples its `ConfigurableTask` builds. The last tests run against the real classes when lmms-eval
is importable and are skipped otherwise.
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from edge_hired.errors import (
    BudgetError,
    EdgeHiredError,
    InvalidArgumentError,
    UnknownStrategyError,
)
from edge_hired.evaluation import lmms_adapter
from edge_hired.evaluation.lmms_adapter import adapter_class, sampling_from_kwargs, selection_for
from edge_hired.runtime.pipeline import SelectionOptions

HAVE_LMMS = importlib.util.find_spec("lmms_eval") is not None


class StandInCacheHook:
    """lmms-eval's CacheHook(None) is a no-op; this one remembers what it was given."""

    def __init__(self) -> None:
        self.partials: list[tuple[str, Any, Any]] = []

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        self.partials.append((attr, req, res))


class StandInLmms(abc.ABC):
    """The interface of lmms-eval 0.7.3's `lmms` base class that a simple model relies on."""

    is_simple: bool = True

    def __init__(self) -> None:
        self._rank = 0
        self._world_size = 1
        self.cache_hook = StandInCacheHook()
        self.task_dict: dict = {}

    @abc.abstractmethod
    def loglikelihood(self, requests: list) -> list[tuple[float, bool]]: ...

    @abc.abstractmethod
    def generate_until(self, requests: list) -> list[str]: ...

    @abc.abstractmethod
    def generate_until_multi_round(self, requests: list) -> list[str]: ...

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size


@dataclass
class StandInInstance:
    """lmms-eval's `Instance`: `args` is the argument tuple."""

    request_type: str
    arguments: tuple
    idx: int
    metadata: dict = field(default_factory=lambda: {"task": "t", "doc_id": 0, "repeats": 1})

    @property
    def args(self) -> tuple:
        return self.arguments if isinstance(self.arguments, tuple) else (self.arguments,)


class FakePipeline:
    """Answers with fixed text and remembers each call."""

    def __init__(self, text: str = "Red\nQuestion: anything else?") -> None:
        self.text = text
        self.calls: list[tuple[Image.Image, str, SelectionOptions, Any]] = []

    def run(self, image: Image.Image, prompt: str, selection: SelectionOptions, sampling: Any):
        self.calls.append((image, prompt, selection, sampling))
        return SimpleNamespace(text=self.text, visual_tokens_kept=345, ttft_s=0.25)


def doc_to_visual(doc: dict) -> list[Image.Image]:
    return [doc["image"]]


StandInModel = adapter_class(StandInLmms)


def make_model(model_class: type = StandInModel, **kwargs: Any) -> Any:
    model = model_class(pipeline=kwargs.pop("pipeline", FakePipeline()), **kwargs)
    docs = [
        {"image": Image.new("L", (40, 30), 200), "question": "What colour?", "answer": "red"},
        {"image": Image.new("RGB", (30, 40), (0, 0, 255)), "question": "Shape?"},
    ]
    model.task_dict = {"vqa_task": {"val": docs}}
    return model


def generate_request(context: str, gen_kwargs: dict, doc_id: int = 0) -> StandInInstance:
    # as ConfigurableTask builds it: (ctx, generation kwargs, doc_to_visual, doc_id, task, split)
    return StandInInstance(
        "generate_until", (context, gen_kwargs, doc_to_visual, doc_id, "vqa_task", "val"), 0
    )


def test_adapter_implements_every_abstract_method() -> None:
    model = make_model(budget=0.2, strategy="hired")
    assert isinstance(model, StandInLmms) and model.is_simple
    assert model.selection == SelectionOptions(strategy="hired", ratio=0.2)


def test_generate_until_runs_the_pipeline_once_per_request() -> None:
    pipeline = FakePipeline()
    model = make_model(pipeline=pipeline, budget="0.4", strategy="spatial")
    kwargs = {"until": ["\n"], "max_new_tokens": 5, "temperature": 0, "do_sample": False}
    requests = [
        generate_request("<image>\nWhat colour?\nAnswer briefly.", kwargs),
        generate_request("Shape?", {"max_new_tokens": 3}, doc_id=1),
    ]
    answers = model.generate_until(requests)
    assert answers == ["Red", "Red\nQuestion: anything else?"]  # cut at the stop string only
    (image, prompt, selection, sampling), (image2, prompt2, _, sampling2) = pipeline.calls
    assert prompt == "What colour?\nAnswer briefly." and prompt2 == "Shape?"  # no placeholder
    assert image.mode == "RGB" and image.size == (40, 30) and image2.size == (30, 40)
    assert selection == SelectionOptions(strategy="spatial", ratio=0.4)
    assert (sampling.max_new_tokens, sampling.do_sample) == (5, False)
    assert sampling2.max_new_tokens == 3
    assert model.visual_tokens_kept == [345, 345] and model.ttft_s == [0.25, 0.25]
    assert [p[0] for p in model.cache_hook.partials] == ["generate_until"] * 2


def test_generate_until_defaults_to_the_adapters_max_new_tokens() -> None:
    pipeline = FakePipeline()
    make_model(pipeline=pipeline, max_new_tokens=7).generate_until([generate_request("Q?", {})])
    assert pipeline.calls[0][3].max_new_tokens == 7


def test_sampling_kwargs() -> None:
    sampled, stops = sampling_from_kwargs({"temperature": 0.7, "top_p": 0.9, "until": "###"}, 16)
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, stops) == (
        True,
        0.7,
        0.9,
        ["###"],
    )
    greedy, stops = sampling_from_kwargs({"temperature": 0, "top_p": 0.9}, 16)
    assert (greedy.do_sample, greedy.temperature, greedy.top_p, stops) == (False, None, None, [])
    with pytest.raises(InvalidArgumentError, match="num_beams"):
        sampling_from_kwargs({"num_beams": 4}, 16)
    with pytest.raises(InvalidArgumentError, match="'until'"):
        sampling_from_kwargs({"until": 3}, 16)


def test_requests_need_exactly_one_image() -> None:
    model = make_model()
    model.task_dict["vqa_task"]["val"][0]["image"] = None
    two = StandInInstance(
        "generate_until", ("Q?", {}, lambda doc: [doc, doc], 1, "vqa_task", "val"), 0
    )
    with pytest.raises(InvalidArgumentError, match="exactly one image"):
        model.generate_until([two])
    with pytest.raises(InvalidArgumentError, match="a PIL image or an image path"):
        model.generate_until([generate_request("Q?", {}, doc_id=0)])


@pytest.mark.parametrize(
    ("budget", "strategy", "selection"),
    [
        ("full", "hired", SelectionOptions(strategy="full")),
        (0.2, "full", SelectionOptions(strategy="full")),
        (0.2, "prumerge+", SelectionOptions(strategy="prumerge+")),  # adaptive: no ratio
        ("0.1", "hired-ref", SelectionOptions(strategy="hired-ref", ratio=0.1)),
    ],
)
def test_budget_and_strategy(budget: object, strategy: str, selection: SelectionOptions) -> None:
    assert selection_for(budget, strategy) == selection


def test_bad_model_args_are_user_errors() -> None:
    with pytest.raises(UnknownStrategyError):
        make_model(strategy="best")
    with pytest.raises(BudgetError):
        make_model(budget=1.5)
    with pytest.raises(InvalidArgumentError, match="model_args"):
        make_model(temperature=3)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        make_model(batch_size=8)


def test_multi_round_tasks_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="generate_until_multi_round"):
        make_model().generate_until_multi_round([])


def test_loglikelihood_needs_an_in_process_pipeline() -> None:
    request = StandInInstance(
        "loglikelihood", ("What colour?", " red", doc_to_visual, 0, "vqa_task", "val"), 0
    )
    with pytest.raises(InvalidArgumentError, match="in-process transformers Pipeline"):
        make_model().loglikelihood([request])


@pytest.mark.skipif(HAVE_LMMS, reason="lmms-eval is installed")
def test_without_lmms_eval_the_class_says_how_to_install_it() -> None:
    with pytest.raises(EdgeHiredError, match=r"pip install 'edge-hired\[lmms\]'"):
        _ = lmms_adapter.EdgeHiredLmms
    with pytest.raises(AttributeError):
        _ = lmms_adapter.NoSuchThing


# --- with the real lmms-eval, when it is installed --------------------------------------------


@pytest.mark.skipif(not HAVE_LMMS, reason="lmms-eval is not installed (optional extra 'lmms')")
def test_real_lmms_base_class_and_instance() -> None:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms

    cls = lmms_adapter.EdgeHiredLmms
    assert issubclass(cls, lmms) and not cls.__abstractmethods__
    model = make_model(cls, budget=0.2)
    request = Instance(
        request_type="generate_until",
        arguments=("What colour?", {"until": ["\n"]}, doc_to_visual, 0, "vqa_task", "val"),
        idx=0,
        metadata={"task": "vqa_task", "doc_id": 0, "repeats": 1},
    )
    assert model.generate_until([request]) == ["Red"]
