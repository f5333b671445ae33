"""In-process pipeline: image -> encoder with its attention signal -> HiRED -> stock LLM.

`Pipeline.run` is the library call behind `edge-hired run`: a batch of one over the decode
engine the server schedules many requests on (`runtime.engine`). It works on `VlmParts`, so the
same code serves a transformers checkpoint and an exported bundle (`runtime.bundle_runtime`);
callers outside `runtime/` use its accessors (`tokenizer`, `facts`, ...), never its parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from edge_hired.device.device_memory import DeviceMeter, meter_for
from edge_hired.device.memory import peak_rss_mib, reset_peak_rss
from edge_hired.device.sync import DeviceClock
from edge_hired.errors import InvalidArgumentError, expected
from edge_hired.hired import RESIZE, Selection
from edge_hired.hired.budget import resolve_budget
from edge_hired.hired.geometry import ImageGeometry
from edge_hired.runtime import prefix as visual_prefix
from edge_hired.runtime.engine import Engine, PrefixCache
from edge_hired.runtime.generation import Generation, GenerationRequest, generate
from edge_hired.runtime.images import load_image
from edge_hired.runtime.loading import LoadedModel, ModelFacts, VlmParts, load_parts
from edge_hired.runtime.prefix import ImageInput, SelectionOptions, split_at_image
from edge_hired.runtime.prompts import conversation_ids
from edge_hired.runtime.result import RunResult
from edge_hired.runtime.sampling import SamplingOptions
from edge_hired.runtime.static_decode import StaticDecoder
from edge_hired.runtime.vision import VisionOutput

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target

__all__ = ["Pipeline", "SamplingOptions", "SelectionOptions", "run"]

# (phase that starts, time mark at which it starts); None closes the last phase.
PHASE_MARKS = (
    ("preprocess", "start"),
    ("encode", "preprocessed"),
    ("select", "encoded"),
    ("prefill", "selected"),
    ("decode", "first_token"),
    (None, "finished"),
)
PhaseCallback = Callable[[str | None, float], None]


class Pipeline:
    """A loaded model ready to answer requests; reuse it across images and prompts."""

    def __init__(
        self,
        parts: VlmParts,
        device_reason: str = "",
        clock: DeviceClock | None = None,
        meter: DeviceMeter | None = None,
    ) -> None:
        self.parts = parts
        self.device_reason = device_reason
        self.clock = clock or DeviceClock(parts.device)
        self.meter = meter or meter_for(parts.device.type)
        self.static_decoder: StaticDecoder | None = None  # set by `use_static_decode`

    def use_static_decode(self, decoder: StaticDecoder | None) -> None:
        """Decode on static KV caches with `decoder`'s compiled step (None: eagerly)."""
        self.static_decoder = decoder
        self.__dict__.pop("engine", None)

    # Public accessors: code outside `runtime/` asks these, never `pipeline.parts`.
    @property
    def tokenizer(self) -> Any:
        """The text tokenizer (the processor's)."""
        return self.parts.processor.tokenizer

    @property
    def processor(self) -> Any:
        """The transformers processor (chat template, image processor, tokenizer)."""
        return self.parts.processor

    @property
    def facts(self) -> ModelFacts:
        """The model's geometry facts (what token selection needs)."""
        return self.parts.facts

    @property
    def device(self) -> torch.device:
        """Where the LLM runs."""
        return self.parts.device

    @property
    def llm_config(self) -> Any:
        """The language model's text config (layers, heads, positions)."""
        return self.parts.llm.config.get_text_config()

    @property
    def encoder_provider(self) -> str | None:
        """The ONNX Runtime provider that runs the encoder, or "torch:<device>"."""
        return getattr(self.parts.encoder, "provider", None)

    @property
    def max_positions(self) -> int:
        """Positions the LLM can attend to (prompt plus answer)."""
        return int(getattr(self.llm_config, "max_position_embeddings", 1 << 30))

    @property
    def compute_dtype(self) -> torch.dtype:
        """The LLM's compute dtype (its embeddings' dtype when the parts do not say)."""
        dtype = self.parts.compute_dtype
        return dtype if dtype is not None else self.parts.llm.get_input_embeddings().weight.dtype

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        device: str = "auto",
        dtype: str | None = None,
        l_init: int = 0,
        l_final: int | None = None,
        quantization: str = "none",
        target: Target | None = None,
    ) -> Pipeline:
        """Load a hub id or a local directory (the same path for both) straight onto the device.

        `target` (`edge_hired.runtime.target`) says where and how; without one it is resolved
        here from `device`, `dtype` and `quantization` ("8bit" / "4bit" quantizes the language
        model with bitsandbytes as it loads, no export needed).
        """
        if target is None:
            from edge_hired.runtime.target import ModelSource, TargetFlags, resolve_target

            flags = TargetFlags(device, dtype, quantization=quantization)
            target = resolve_target(flags, ModelSource("model", model_id))
        parts = load_parts(
            model_id, target.device, target.torch_dtype, l_init, l_final, target.quantization
        )
        return cls(parts, target.reason)

    @property
    def model(self) -> torch.nn.Module:
        """The loaded transformers model (a bundle's: its language model and projector).

        For reference comparisons and benchmarks against the stock model; requests go through
        `run` and the engine.
        """
        return self.parts.llm

    @property
    def generation_config(self) -> Any:
        """The LLM's transformers generation config (None where it has none)."""
        return getattr(self.parts.llm, "generation_config", None)

    @property
    def loaded(self) -> LoadedModel:
        """What the loader loaded (dtype, quantization, bytes): the plan counts this."""
        if self.parts.loaded is not None:
            return self.parts.loaded
        return LoadedModel(str(self.compute_dtype).removeprefix("torch."), "none")

    def run(
        self,
        image: str | Path | Image.Image,
        prompt: str,
        selection: SelectionOptions = SelectionOptions(),
        sampling: SamplingOptions = SamplingOptions(),
        on_text: Callable[[str], None] | None = None,
        on_phase: PhaseCallback | None = None,
    ) -> RunResult:
        """Answer `prompt` about `image`, keeping visual tokens as `selection` says.

        `on_text` receives the answer as it streams; `on_phase(name, perf_counter_time)` receives
        the phase boundaries (for telemetry) once the request is done.
        """
        _check_prompt(prompt)
        picture = image if isinstance(image, Image.Image) else load_image(image)
        if selection.strategy == RESIZE and self._tiled():
            return self._run_at_token_knob(picture, prompt, selection, sampling, on_text, on_phase)
        reset_peak_rss()
        self.meter.reset()
        marks = {"start": self._mark()}
        request = GenerationRequest(*self._split(prompt), ImageInput(picture), selection)
        generation = generate(
            self.engine,
            request,
            sampling,
            self.decode,
            on_text,
            clock=self._mark,
            mark=lambda name: marks.__setitem__(name, self._mark()),
        )
        marks["first_token"], marks["finished"] = generation.first_token_at, generation.finished_at
        for name, key in PHASE_MARKS if on_phase else ():
            on_phase(name, marks[key])
        return self._result(generation, marks)

    def _tiled(self) -> bool:
        from edge_hired.runtime.tiled_facts import TiledFacts

        return isinstance(self.facts, TiledFacts)

    def _run_at_token_knob(
        self,
        picture: Image.Image,
        prompt: str,
        selection: SelectionOptions,
        sampling: SamplingOptions,
        on_text: Callable[[str], None] | None,
        on_phase: PhaseCallback | None,
    ) -> RunResult:
        """The tiled families' `resize` baseline: the model's own token knob (InternVL's
        `max_patches`, SmolVLM's `longest_edge`) turned down to the largest setting that sends at
        most the budget, and every token of that smaller layout sent (the stock model at that
        setting). Reported as strategy `resize` with the budget it was held to."""
        from edge_hired.runtime.tiled_knob import token_knob_for, with_token_knob

        full = self.facts.geometry_for((picture.height, picture.width))
        budget = resolve_budget(full, selection.ratio, selection.tokens, selection.cap)
        knobbed = with_token_knob(self, token_knob_for(self, full.image_size, budget))
        every = replace(selection, strategy="full", ratio=None, tokens=None, cap=None)
        result = knobbed.run(picture, prompt, every, sampling, on_text, on_phase)
        return replace(result, strategy=RESIZE, budget_tokens=int(budget))

    @cached_property
    def engine(self) -> Engine:
        """The decode engine `run` uses (no image cache: every request computes its prefix)."""
        return Engine(self.parts, static=self.static_decoder)

    def engine_for(self, cache: PrefixCache | None) -> Engine:
        """A decode engine over this model that keeps prefixes in `cache` (the server's)."""
        return Engine(self.parts, cache, self.static_decoder)

    def _mark(self) -> float:
        """A phase mark: the device drained, the time read, then its memory sampled."""
        at = self.clock.mark()
        self.meter.sample()
        return at

    def preprocess(self, picture: Image.Image) -> tuple[torch.Tensor, ImageGeometry]:
        """Pixel values [P, 3, H, W] on the host, and the image's token geometry."""
        return visual_prefix.preprocess(self.parts, picture)

    def encode(self, pixels: torch.Tensor) -> VisionOutput:
        """The encoder's features and attention rows for preprocessed pixels."""
        return self.parts.encoder(pixels)

    def select(
        self, geometry: ImageGeometry, vision: VisionOutput, options: SelectionOptions
    ) -> Selection:
        """Run the HiRED core on the encoder's attention rows."""
        return visual_prefix.select(geometry, vision, options)

    def input_embeddings(
        self, prompt: str, vision: VisionOutput, chosen: Selection
    ) -> torch.Tensor:
        """[1, T, D] prompt embeddings with the kept visual tokens in the image's place."""
        return visual_prefix.prompt_embeddings(self.parts, self.prompt_ids(prompt), vision, chosen)

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        """Token ids of the chat-formatted prompt with one image placeholder."""
        conversation = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        return conversation_ids(self.parts.processor, conversation)

    def _split(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt's ids before and after its image placeholder."""
        return split_at_image(self.prompt_ids(prompt), self.facts.image_token_id)

    def decode(self, token_ids: list[int]) -> str:
        """Text of token ids, special tokens left out (as the answer is shown)."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def _result(self, generation: Generation, marks: dict[str, float]) -> RunResult:
        """Collect the figures of one request."""
        prefix = generation.prefix
        geometry, chosen = prefix.geometry, prefix.chosen
        return RunResult(
            text=self.decode(generation.token_ids),
            token_ids=generation.token_ids,
            strategy=prefix.strategy,
            budget_tokens=prefix.budget_tokens,
            visual_tokens_total=prefix.visual_tokens_total,
            visual_tokens_kept=prefix.visual_tokens_kept,
            grid=list(geometry.reported_grid),
            kept=[np.asarray(k).tolist() for k in chosen.kept],
            partition_budgets=[int(b) for b in chosen.partition_budgets],
            llm_input_tokens=generation.prompt_tokens,
            ttft_s=marks["first_token"] - marks["start"],
            decode_tokens_per_s=generation.decode_tokens_per_s(),
            peak_rss_mib=peak_rss_mib(),
            image_size=list(geometry.image_size),
            timings_s=_phase_durations(marks),
            device=str(self.device),
            compute_dtype=str(self.compute_dtype).removeprefix("torch."),
            encoder_provider=self.encoder_provider,
            device_peak_mib=self.meter.peak_mib(),
            signal=self.facts.signal,
            compile_s=generation.compile_s,
        )


def _phase_durations(marks: dict[str, float]) -> dict[str, float]:
    """Seconds spent in each phase, from consecutive time marks (keyed by the later mark)."""
    spans = {b: marks[b] - marks[a] for a, b in pairwise(marks)}
    return {
        "preprocess": spans["preprocessed"],
        "encode": spans["encoded"],
        "select": spans["selected"],
        "prefill_to_first_token": spans["first_token"],
        "decode": spans["finished"],
        "total": marks["finished"] - marks["start"],
    }


def _check_prompt(prompt: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidArgumentError(expected("prompt", "non-empty text", prompt))


def run(
    model: str,
    image: str | Path | Image.Image,
    prompt: str,
    selection: SelectionOptions = SelectionOptions(),
    sampling: SamplingOptions = SamplingOptions(),
    device: str = "auto",
    on_text: Callable[[str], None] | None = None,
) -> RunResult:
    """One call: load `model` (hub id or directory) and answer `prompt` about `image`."""
    return Pipeline.from_pretrained(model, device=device).run(
        image, prompt, selection, sampling, on_text
    )
