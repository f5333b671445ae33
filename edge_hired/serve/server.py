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
from dataclasses import replace
from typing import TYPE_CHECKING

import uvicorn

from edge_hired.errors import EdgeHiredError
from edge_hired.runtime.pipeline import Pipeline
from edge_hired.runtime.sources import load_target
from edge_hired.serve.admission import RequestPlanner
from edge_hired.serve.app import create_app
from edge_hired.serve.config import ServeConfig
from edge_hired.serve.metrics import Metrics
from edge_hired.serve.state import ServerState

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target

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


def server_target(config: ServeConfig) -> Target:
    """The config's target, or one resolved once from its loose fields (library callers)."""
    if config.target is not None:
        return config.target
    from edge_hired.runtime.sources import model_source
    from edge_hired.runtime.target import TargetFlags, resolve_target

    flags = TargetFlags(
        device=config.device,
        dtype=config.dtype,
        profile=config.profile,
        memory_cap_gib=config.memory_cap_gib,
        ttft_target_s=config.ttft_target_s,
        headless=config.headless,
    )
    return resolve_target(flags, model_source(config.model, config.bundle))


def build_planner(config: ServeConfig, target: Target | None = None) -> RequestPlanner | None:
    """The request planner for the target's profile / memory cap (None without them).

    Planned before loading from what the target will load; the profile is the target's object
    (a calibrated file included), never reloaded by name.
    """
    target = target or server_target(config)
    if not target.wants_plan:
        return None
    from edge_hired.facts.run_facts import plan_for_target, plan_profile, target_run_facts

    facts = target_run_facts(target, PLAN_CHECK_HW, "")
    profile = plan_profile(target.profile, facts.device)
    target = replace(target, profile=profile)
    plan = plan_for_target(target, facts, config.default_max_tokens, "none", first_request=False)
    return RequestPlanner(facts.inputs, profile, plan.cap, facts.device, target.ttft_target_s)


def pipeline_loader(target: Target) -> Callable[[], Pipeline]:
    """Loads the target's bundle or checkpoint as `edge-hired run` does."""

    def load() -> Pipeline:
        return load_target(target)

    return load


def make_server(config: ServeConfig) -> tuple[GracefulServer, ServerState]:
    """A uvicorn server (not started) and the state it serves."""
    target = server_target(config)
    planner = build_planner(config, target)
    state = ServerState(config, pipeline_loader(target), planner, Metrics())
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
