"""Run the app under uvicorn: plan first, load in the background, stop gracefully on SIGTERM.

uvicorn handles SIGTERM/SIGINT: it stops accepting connections and waits (at most
--graceful-timeout seconds) for in-flight responses, streams included; then the app's lifespan
stops the batching worker. A model that fails to load stops the server with its reason.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import uvicorn

from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.sources import load_pipeline
from edge_hired.serve.admission import RequestPlanner
from edge_hired.serve.app import create_app
from edge_hired.serve.config import ServeConfig
from edge_hired.serve.metrics import Metrics
from edge_hired.serve.state import ServerState

#: The image size the start-up plan checks (one 336 px tile): fails fast when nothing fits.
PLAN_CHECK_HW = (336, 336)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that a handled SIGTERM/SIGINT ends with exit status 0.

    uvicorn re-raises the captured signal after its graceful shutdown, so the process would
    die by SIGTERM; a server that drained cleanly has nothing to report.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def build_planner(config: ServeConfig) -> RequestPlanner | None:
    """The request planner for --profile / --memory-cap (None without them), before loading."""
    if not config.wants_plan:
        return None
    from edge_hired.facts.run_facts import PlanLimits, bundle_run_facts, plan_for_run, run_facts
    from edge_hired.profiles import load_profile

    if config.bundle:
        facts = bundle_run_facts(config.bundle, PLAN_CHECK_HW, "", config.device)
    else:
        facts = run_facts(config.model, PLAN_CHECK_HW, "", config.device, config.dtype)
    limits = PlanLimits(ttft_target_s=config.ttft_target_s, headless=config.headless)
    plan = plan_for_run(
        facts, config.profile, config.memory_cap_gib, config.default_max_tokens, limits=limits
    )
    profile = load_profile(plan.profile)
    return RequestPlanner(facts.inputs, profile, plan.cap, facts.device, config.ttft_target_s)


def pipeline_loader(config: ServeConfig) -> Callable[[], Pipeline]:
    """Loads --bundle or --model as `edge-hired run` does."""

    def load() -> Pipeline:
        return load_pipeline(config.model, config.bundle, config.device, config.dtype)

    return load


def make_server(config: ServeConfig) -> tuple[GracefulServer, ServerState]:
    """A uvicorn server (not started) and the state it serves."""
    state = ServerState(config, pipeline_loader(config), build_planner(config), Metrics())
    app = create_app(state)
    app.router.lifespan_context = _lifespan(state)
    settings = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        timeout_graceful_shutdown=int(config.graceful_timeout_s),
    )
    server = GracefulServer(settings)
    state.on_failure = lambda: setattr(server, "should_exit", True)
    return server, state


def _lifespan(state: ServerState):
    @asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        state.start_loading()
        yield
        state.stop()

    return lifespan


def serve(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT; raises the load error if the model would not load."""
    server, state = make_server(config)
    server.run()
    if state.error:
        raise EdgeHiredError(state.error)
