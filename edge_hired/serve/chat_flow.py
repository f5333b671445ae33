"""One chat request on the event loop: queue the job, wait for its start, then answer or stream.

The response status is decided only once the worker has prefilled the request (or refused it),
so a streaming client also gets a 400 rather than a broken stream. When the client goes away
(streaming or not: `app` cancels the awaiting task) or a stop string ends the answer, the job is
cancelled and the worker frees its slot before its next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from edge_hired.serve.api_errors import ApiError
from edge_hired.serve.detokenize import TextTracker
from edge_hired.serve.events import Done, Failed, Started, Token
from edge_hired.serve.metrics import Metrics
from edge_hired.serve.preparation import Prepared
from edge_hired.serve.responses import DONE, Outcome, chunk, completion, usage_chunk
from edge_hired.serve.scheduler import Job
from edge_hired.serve.schemas import ChatRequest
from edge_hired.serve.state import Ready


class ChatFlow:
    """The events of one job, turned into an OpenAI response."""

    def __init__(self, ready: Ready, request: ChatRequest, model: str, metrics: Metrics) -> None:
        self.ready, self.request, self.model, self.metrics = ready, request, model, metrics
        self.start = time.perf_counter()
        self.events: asyncio.Queue = asyncio.Queue()
        self.outcome = Outcome()
        self.text = TextTracker(ready.pipeline.decode, request.stop_strings())
        self.job: Job | None = None
        self._open = False  # counted in the in-flight gauge

    async def begin(self) -> None:
        """Prepare and queue the job, and wait until it has started (or failed)."""
        prepared: Prepared = await run_in_threadpool(self.ready.preparer.prepare, self.request)
        loop = asyncio.get_running_loop()
        self.outcome.capped_by_memory = prepared.admission.capped_by_memory
        self.job = Job(
            prepared.prompt.prefix,
            prepared.prompt.suffix,
            prepared.image,
            prepared.selection,
            prepared.sampling,
            lambda event: loop.call_soon_threadsafe(self.events.put_nowait, event),
            prepared.admission.cost,
        )
        self.ready.scheduler.submit(self.job)
        try:
            await self._started()
        except BaseException:
            self.cancel()
            raise

    async def _started(self) -> None:
        event = await self.events.get()
        if isinstance(event, Failed):
            raise event.error
        if not isinstance(event, Started):
            raise ApiError(503, "request cancelled before it started")
        self.outcome.prefill = event.prefill
        self.metrics.in_flight.inc()
        self._open = True
        self._count_cache(event.prefill)

    def _count_cache(self, prefill) -> None:
        if self.job and self.job.image is not None:
            self.metrics.cache.labels("hit" if prefill.cache_hit else "miss").inc()
        self.metrics.visual_kept.observe(prefill.prefix.visual_tokens_kept)

    async def deltas(self) -> AsyncIterator[str]:
        """Text deltas until the job is done; sets the outcome's finish reason."""
        while self.outcome.finish_reason is None:
            event = await self.events.get()
            if isinstance(event, Token):
                delta = self._token(event.token_id)
                if delta:
                    yield delta
            elif isinstance(event, Failed):
                raise event.error
            elif isinstance(event, Done):
                self.outcome.finish_reason = "stop" if event.reason == "cancelled" else event.reason
        rest = self.text.finish()
        if rest:
            yield rest
        self._finished()

    def _token(self, token_id: int) -> str:
        if self.outcome.ttft_s is None:
            self.outcome.ttft_s = time.perf_counter() - self.start
            self.metrics.ttft.observe(self.outcome.ttft_s)
        if self.text.stopped:
            return ""
        self.outcome.token_ids.append(token_id)
        self.metrics.tokens.inc()
        delta = self.text.feed(token_id)
        if self.text.stopped and self.job is not None:
            self.ready.scheduler.cancel(self.job)
        return delta

    def _finished(self) -> None:
        self.metrics.e2e.observe(time.perf_counter() - self.start)
        self._close()

    def _close(self) -> None:
        if self._open:
            self._open = False
            self.metrics.in_flight.dec()

    def cancel(self) -> None:
        """Tell the worker to drop the job (a no-op once it is done)."""
        if self.job is not None:
            self.ready.scheduler.cancel(self.job)
        self._close()

    async def answer(self) -> dict[str, Any]:
        """The whole `chat.completion`."""
        try:
            text = "".join([delta async for delta in self.deltas()])
        finally:
            self.cancel()
        return completion(self.outcome, self.model, text)

    async def stream(self) -> AsyncIterator[str]:
        """SSE: a role chunk, content chunks, the finish chunk, usage (if asked), [DONE]."""
        try:
            yield chunk(self.outcome, self.model, {"role": "assistant", "content": ""})
            async for delta in self.deltas():
                yield chunk(self.outcome, self.model, {"content": delta})
            yield chunk(self.outcome, self.model, {}, self.outcome.finish_reason)
            if self.request.include_usage():
                yield usage_chunk(self.outcome, self.model)
            yield DONE
        finally:
            self.cancel()
