"""What the server holds once the model is loaded, and the loading itself (off the event loop).

`/health` answers 503 "loading" until `load` finishes; chat requests get a 503 with Retry-After
meanwhile. A load that fails records its one-line reason and asks the server to exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.serve.admission import MemoryGate, RequestPlanner
from edge_hired.serve.api_errors import unavailable
from edge_hired.serve.config import ServeConfig
from edge_hired.serve.metrics import Metrics
from edge_hired.serve.prefix_cache import ByteLRU
from edge_hired.serve.preparation import Preparer
from edge_hired.serve.scheduler import Scheduler


@dataclass
class Ready:
    """The loaded model and the machinery around it."""

    pipeline: Pipeline
    preparer: Preparer
    scheduler: Scheduler
    cache: ByteLRU


class ServerState:
    """Loading status and, once loaded, the `Ready` parts."""

    def __init__(
        self,
        config: ServeConfig,
        load_pipeline: Callable[[], Pipeline],
        planner: RequestPlanner | None,
        metrics: Metrics,
    ) -> None:
        self.config, self.metrics, self.planner = config, metrics, planner
        self._load_pipeline = load_pipeline
        self.ready: Ready | None = None
        self.error: str | None = None
        self.on_failure: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self.load, name="edge-hired-load", daemon=True)

    def start_loading(self) -> None:
        self._thread.start()

    def load(self) -> None:
        """Load the pipeline and start the batching worker."""
        try:
            pipeline = self._load_pipeline()
        except EdgeHiredError as error:
            self.error = str(error)
            self.on_failure()
            return
        self.ready = self._assemble(pipeline)
        self.ready.scheduler.start()

    def _assemble(self, pipeline: Pipeline) -> Ready:
        config = self.config
        cache = ByteLRU(int(config.cache_mb * 2**20))
        cap = self.planner.cap.bytes if self.planner else None
        scheduler = Scheduler(
            pipeline.engine_for(cache),
            MemoryGate(cap, cache),
            config.max_batch,
            config.max_queue,
            self.metrics.observe,
        )
        return Ready(pipeline, Preparer(pipeline, config, self.planner), scheduler, cache)

    def require_ready(self) -> Ready:
        """The loaded parts, or a 503 while loading."""
        if self.ready is None:
            raise unavailable("model is loading", retry_after_s=5)
        return self.ready

    def stop(self) -> None:
        """Stop the worker (after in-flight requests were answered)."""
        if self.ready is not None:
            self.ready.scheduler.stop()
