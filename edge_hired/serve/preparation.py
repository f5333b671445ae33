"""A validated request -> a `Job`'s ingredients: prompt ids, decoded image, selection, sampling.

Everything a client can get wrong is checked here, before the request is queued, so it is
answered with a 400/413 at once: the image source and bytes, the budget for this image, the
context length, and whether the memory plan can serve it at all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from edge_hired.errors import BudgetError, EdgeHiredError
from edge_hired.facts.run_facts import check_full_fits
from edge_hired.hired.budget import resolve_budget
from edge_hired.runtime.pipeline import Pipeline, SelectionOptions
from edge_hired.runtime.prefix import ImageInput
from edge_hired.runtime.sampling import SamplingOptions
from edge_hired.serve.admission import Admission, Cost, RequestPlanner, text_cost
from edge_hired.serve.api_errors import bad_request
from edge_hired.serve.config import ServeConfig
from edge_hired.serve.conversation import PromptIds, prompt_ids
from edge_hired.serve.image_decode import decode_image
from edge_hired.serve.image_sources import SourcePolicy, image_bytes
from edge_hired.serve.sampling import request_sampling
from edge_hired.serve.schemas import ChatRequest, HiredOptions


@dataclass(frozen=True)
class Prepared:
    """What the worker needs for one request."""

    prompt: PromptIds
    image: ImageInput | None
    selection: SelectionOptions
    sampling: SamplingOptions
    max_tokens: int
    admission: Admission


class Preparer:
    """Turns requests into prepared jobs for one loaded pipeline and the server's flags."""

    def __init__(
        self, pipeline: Pipeline, config: ServeConfig, planner: RequestPlanner | None
    ) -> None:
        self.pipeline, self.config, self.planner = pipeline, config, planner
        self.policy = SourcePolicy(
            config.max_image_bytes, config.allow_image_urls, config.media_dir
        )
        text_config = pipeline.llm_config
        self.max_positions = int(getattr(text_config, "max_position_embeddings", 1 << 30))
        self._tokenizer_lock = threading.Lock()  # requests are prepared in a thread pool

    def prepare(self, request: ChatRequest) -> Prepared:
        """Check and convert; raises ApiError for anything the client got wrong."""
        facts = self.pipeline.facts
        with self._tokenizer_lock:
            processor = self.pipeline.processor
            prompt = prompt_ids(processor, request.messages, facts.image_token_id)
        image = self._image(prompt.image_url)
        selection = self._selection(request.hired)
        max_tokens = request.max_completion_tokens or request.max_tokens
        max_tokens = max_tokens or self.config.default_max_tokens
        admission = self._admission(prompt, image, selection, max_tokens)
        if admission.capped:
            selection = replace(selection, cap=admission.token_cap)
        sampling = request_sampling(request, max_tokens)
        return Prepared(prompt, image, selection, sampling, max_tokens, admission)

    def _image(self, url: str | None) -> ImageInput | None:
        if url is None:
            return None
        data = image_bytes(url, self.policy)
        return ImageInput.from_bytes(decode_image(data), data)

    def _selection(self, hired: HiredOptions | None) -> SelectionOptions:
        """The server's selection flags, overridden by the request's `hired` fields."""
        base = self.config.selection
        if hired is None:
            return base
        if hired.budget is not None or hired.tokens is not None:
            base = replace(base, ratio=hired.budget, tokens=hired.tokens)
        changes = {k: v for k, v in (("strategy", hired.strategy), ("alpha", hired.alpha)) if v}
        return replace(base, **changes) if changes else base

    def _admission(
        self, prompt: PromptIds, image: ImageInput | None, selection: SelectionOptions, new: int
    ) -> Admission:
        """Visual tokens asked for this image, the context check, and the memory plan."""
        visual, geometry = 0, None
        if image is not None:
            geometry = self.pipeline.facts.geometry_for(image.picture.size[::-1])
            visual = self._asked(geometry, selection)
        if prompt.text_tokens + visual + new > self.max_positions:
            raise bad_request(
                f"context: {prompt.text_tokens} text + {visual} visual + {new} new tokens is "
                f"over the model's {self.max_positions} positions",
                "max_tokens",
            )
        if self.planner is None:
            return Admission(None, False, Cost())
        if geometry is None:
            return Admission(None, False, text_cost(self.planner.inputs, prompt.text_tokens, new))
        admission = self.planner.admit(geometry, visual, prompt.text_tokens, new)
        cap = admission.token_cap if admission.capped else None
        try:
            check_full_fits(selection.strategy, visual, cap, "hired.strategy")
        except BudgetError as error:
            raise bad_request(str(error), "hired.strategy") from error
        return admission

    @staticmethod
    def _asked(geometry, selection: SelectionOptions) -> int:
        """The visual tokens the request asks for (before any memory cap)."""
        try:
            if selection.strategy == "full":
                return int(geometry.valid_counts().sum())
            return resolve_budget(geometry, selection.ratio, selection.tokens)
        except EdgeHiredError as error:
            raise bad_request(f"hired: {error}", "hired") from error
