"""The worker thread: admits queued requests, prefills them, and decodes them in one batch.

Requests join the running batch between decode steps (up to --max-batch, as memory admits)
and leave it when they finish, stop or are cancelled (a client that went away, streaming or
not), which frees their slot and their memory reservation at once: a cancelled row is dropped
before the next step, so it runs at most the one step in flight when it was cancelled. Events
(`serve.events`) go back to each request through its `emit` callback; the worker never blocks
on a client. The model work is `runtime.engine`'s, the same as `edge-hired run`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.engine import Batch, Engine, Prefill, finish_reason
from edge_hired.runtime.prefix import ImageInput, SelectionOptions
from edge_hired.runtime.sampling import Sampler, SamplingOptions
from edge_hired.serve.admission import Cost, MemoryGate
from edge_hired.serve.api_errors import ApiError, bad_request, unavailable
from edge_hired.serve.events import Done, Event, Failed, Started, Token

log = logging.getLogger("edge_hired.serve")


@dataclass
class Job:
    """One request as the worker sees it."""

    prefix_ids: torch.Tensor
    suffix_ids: torch.Tensor
    image: ImageInput | None
    selection: SelectionOptions
    sampling: SamplingOptions
    emit: Callable[[Event], None]
    cost: Cost = field(default_factory=Cost)
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancelled_at_step: int | None = None  # the worker's step count when it was cancelled


@dataclass
class Row:
    """A job in the batch: its sampler, its last token and where its next one goes."""

    job: Job
    sampler: Sampler
    last_token: int
    position: int

    @property
    def generated(self) -> int:
        return len(self.sampler.picked)


class Scheduler:
    """Owns the batch; `submit` from any thread, `start`/`stop` from the server."""

    def __init__(
        self,
        engine: Engine,
        gate: MemoryGate,
        max_batch: int,
        max_queue: int,
        observe: Callable[[str, float], None] = lambda _name, _value: None,
    ) -> None:
        self.engine, self.gate = engine, gate
        self.max_batch, self.max_queue, self.observe = max_batch, max_queue, observe
        self.pending: deque[Job] = deque()
        self.rows: list[Row] = []
        self.batch = Batch(engine)
        self.steps = 0  # decode steps run so far
        self.listener: Callable[[Job, Event], None] | None = None  # sees every event (tests)
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
            self._emit(self.pending.popleft(), Failed(unavailable("server shutting down")))

    def submit(self, job: Job) -> None:
        """Queue a job, or raise a 503 when --max-queue jobs already wait."""
        with self._wake:
            if len(self.pending) >= self.max_queue:
                raise unavailable(f"queue full ({self.max_queue} requests waiting)")
            self.pending.append(job)
            self.observe("queue_depth", len(self.pending))
            self._wake.notify()

    def cancel(self, job: Job) -> None:
        """The client left: the job leaves the queue or the batch before the next step."""
        if not job.cancelled.is_set():
            job.cancelled_at_step = self.steps
            job.cancelled.set()

    def _emit(self, job: Job, event: Event) -> None:
        """The event to the listener (first: it sees it before the client can), then the job."""
        if self.listener is not None:
            self.listener(job, event)
        job.emit(event)

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
        self._drop_cancelled()
        if self.rows:
            self._decode_step()
        elif self.pending:
            time.sleep(0.01)  # the head waits for memory that cancelled jobs still release

    def _fail_batch(self, error: Exception) -> None:
        """Answer every row of the batch with a 500 and start an empty batch."""
        for row in self.rows:
            self.gate.release(row.job.cost)
            self._emit(row.job, Failed(ApiError(500, f"internal error ({type(error).__name__})")))
        self.rows, self.batch = [], Batch(self.engine)

    def _next_admissible(self) -> Job | None:
        """The head of the queue if it fits now (cancelled jobs are dropped)."""
        with self._wake:
            for job in [job for job in self.pending if job.cancelled.is_set()]:
                self.pending.remove(job)
                self._emit(job, Done("cancelled"))
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
        self._emit(job, Failed(api))

    def _join(self, job: Job, prefill: Prefill) -> None:
        """Emit the first token and add the job to the batch (unless it is already done)."""
        self._emit(job, Started(prefill))
        sampler = self.engine.sampler(job.sampling)
        token = sampler.choose(prefill.logits)
        self._emit(job, Token(token))
        row = Row(job, sampler, token, prefill.prompt_tokens)
        if self._finished(row):
            return
        self.batch.join(prefill, reserve=job.sampling.max_new_tokens - row.generated)
        self.rows.append(row)

    def _decode_step(self) -> None:
        self.observe("batch_size", len(self.rows))
        tokens = [row.last_token for row in self.rows]
        positions = [row.position for row in self.rows]
        logits = self.batch.step(tokens, positions)
        self.steps += 1
        keep = []
        for index, row in enumerate(self.rows):
            row.last_token = row.sampler.choose(logits[index])
            row.position += 1
            self._emit(row.job, Token(row.last_token))
            if not self._finished(row):
                keep.append(index)
        self._keep(keep)

    def _drop_cancelled(self) -> None:
        """Rows whose client left go before the step, not after it."""
        keep = [i for i, row in enumerate(self.rows) if not self._finished(row, cancel_only=True)]
        self._keep(keep)

    def _finished(self, row: Row, cancel_only: bool = False) -> bool:
        """Emit Done and release the job when it was cancelled, hit EOS or its length."""
        if row.job.cancelled.is_set():
            reason = "cancelled"
        elif cancel_only:
            return False
        else:
            limit = row.job.sampling.max_new_tokens
            reason = finish_reason(row.last_token, row.generated, limit, self.engine.eos_ids)
            if reason is None:
                return False
        self.gate.release(row.job.cost)
        self._emit(row.job, Done(reason, row.generated))
        return True

    def _keep(self, keep: list[int]) -> None:
        """Drop finished rows from the batch (and the cache columns nobody needs)."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        self.batch.keep(keep)
