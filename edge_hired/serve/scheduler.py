"""The worker thread: admits queued requests, prefills them, and decodes them in one batch.

Requests join the running batch between decode steps (up to --max-batch, as memory admits)
and leave it when they finish, stop or are cancelled (a client that went away), which frees
their slot and their memory reservation at once. Events go back to each request through its
`emit` callback; the worker never blocks on a client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.pipeline import SelectionOptions
from edge_hired.serve.admission import Cost, MemoryGate
from edge_hired.serve.api_errors import ApiError, bad_request, unavailable
from edge_hired.serve.engine import Engine, ImageInput, Prefill
from edge_hired.serve.kv import join_rows, keep_rows
from edge_hired.serve.sampling import Sampler

log = logging.getLogger("edge_hired.serve")
Event = tuple[str, Any]  # ("started", Prefill) | ("token", id) | ("done", reason) | ("error", e)


@dataclass
class Job:
    """One request as the worker sees it."""

    prefix_ids: torch.Tensor
    suffix_ids: torch.Tensor
    image: ImageInput | None
    selection: SelectionOptions
    sampler: Sampler
    max_tokens: int
    emit: Callable[[Event], None]
    cost: Cost = field(default_factory=Cost)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class Row:
    """A job in the batch: how many tokens it has and where its next one goes."""

    job: Job
    last_token: int
    position: int
    generated: int = 1


class Scheduler:
    """Owns the batch; `submit` from any thread, `start`/`stop` from the server."""

    def __init__(
        self,
        engine: Engine,
        gate: MemoryGate,
        eos_ids: set[int],
        max_batch: int,
        max_queue: int,
        observe: Callable[[str, float], None] = lambda _name, _value: None,
    ) -> None:
        self.engine, self.gate, self.eos_ids = engine, gate, eos_ids
        self.max_batch, self.max_queue, self.observe = max_batch, max_queue, observe
        self.pending: deque[Job] = deque()
        self.rows: list[Row] = []
        self._cache = None
        self._mask: torch.Tensor | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="edge-hired-batch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the current step; waiting jobs get a 503."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout_s)
        while self.pending:
            self.pending.popleft().emit(("error", unavailable("server shutting down")))

    def submit(self, job: Job) -> None:
        """Queue a job, or raise a 503 when --max-queue jobs already wait."""
        with self._wake:
            if len(self.pending) >= self.max_queue:
                raise unavailable(f"queue full ({self.max_queue} requests waiting)")
            self.pending.append(job)
            self.observe("queue_depth", len(self.pending))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                if not self.rows and not self.pending:
                    self._wake.wait(0.5)
                    continue
            try:
                self._work()
            except Exception as error:  # a bug: fail the batch, keep serving the rest
                log.exception("batch step failed")
                self._fail_batch(error)

    def _work(self) -> None:
        self._admit()
        if self.rows:
            self._decode_step()
        elif self.pending:
            time.sleep(0.01)  # the head waits for memory that cancelled jobs still release

    def _fail_batch(self, error: Exception) -> None:
        """Answer every row of the batch with a 500 and start an empty batch."""
        for row in self.rows:
            self.gate.release(row.job.cost)
            row.job.emit(("error", ApiError(500, f"internal error ({type(error).__name__})")))
        self.rows, self._cache, self._mask = [], None, None

    def _next_admissible(self) -> Job | None:
        """The head of the queue if it fits now (cancelled heads are dropped)."""
        with self._wake:
            while self.pending and self.pending[0].cancelled.is_set():
                self.pending.popleft().emit(("done", "cancelled"))
            if not self.pending or len(self.rows) >= self.max_batch:
                return None
            if not self.gate.try_admit(self.pending[0].cost):
                return None
            job = self.pending.popleft()
            self.observe("queue_depth", len(self.pending))
            return job

    def _admit(self) -> None:
        while (job := self._next_admissible()) is not None:
            try:
                prefill = self.engine.prefill(
                    job.prefix_ids, job.suffix_ids, job.image, job.selection
                )
            except (EdgeHiredError, ApiError) as error:
                self._fail(job, error)
                continue
            except Exception as error:  # a bug: this request gets a 500, the rest go on
                log.exception("prefill failed")
                self._fail(job, ApiError(500, f"internal error ({type(error).__name__})"))
                continue
            self._join(job, prefill)

    def _fail(self, job: Job, error: Exception) -> None:
        self.gate.release(job.cost)
        api = error if isinstance(error, ApiError) else bad_request(str(error))
        job.emit(("error", api))

    def _join(self, job: Job, prefill: Prefill) -> None:
        """Emit the first token and add the job to the batch (unless it is already done)."""
        job.emit(("started", prefill))
        token = job.sampler.choose(prefill.logits)
        job.emit(("token", token))
        row = Row(job, token, prefill.mask.shape[1])
        if self._finished(row):
            return
        if self._mask is None:
            self._cache, self._mask = prefill.cache, prefill.mask
        else:
            self._cache, self._mask = join_rows(
                self._cache, self._mask, prefill.cache, prefill.mask
            )
        self.rows.append(row)

    def _decode_step(self) -> None:
        self.observe("batch_size", len(self.rows))
        tokens = [row.last_token for row in self.rows]
        positions = [row.position for row in self.rows]
        self._cache, self._mask, logits = self.engine.step(
            self._cache, self._mask, tokens, positions
        )
        keep = []
        for index, row in enumerate(self.rows):
            row.last_token = row.job.sampler.choose(logits[index])
            row.position += 1
            row.generated += 1
            row.job.emit(("token", row.last_token))
            if not self._finished(row):
                keep.append(index)
        self._keep(keep)

    def _finished(self, row: Row) -> bool:
        """Emit "done" and release the job when it reached EOS, its length, or was cancelled."""
        if row.job.cancelled.is_set():
            reason = "cancelled"
        elif row.last_token in self.eos_ids:
            reason = "stop"
        elif row.generated >= row.job.max_tokens:
            reason = "length"
        else:
            return False
        self.gate.release(row.job.cost)
        row.job.emit(("done", reason))
        return True

    def _keep(self, keep: list[int]) -> None:
        """Drop finished rows from the batch (and the cache columns nobody needs)."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self._cache, self._mask = None, None
            return
        self._cache, self._mask = keep_rows(self._cache, self._mask, keep)
