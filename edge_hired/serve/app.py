"""The FastAPI application: routes, API-key check, and OpenAI-shaped errors for every refusal.

Schema errors and malformed JSON are 400 (not FastAPI's 422); unknown routes 404; an unknown
model 404; a wrong or missing key 401 when --api-key is set. A 500 means a bug in the server.
A chat request runs under `with_cancellation` (after vLLM's): when the client disconnects
before its answer is ready, the request's task is cancelled, which cancels its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from edge_hired.serve.api_errors import ApiError, bad_request
from edge_hired.serve.chat_flow import ChatFlow
from edge_hired.serve.schemas import ChatRequest
from edge_hired.serve.state import ServerState

log = logging.getLogger("edge_hired.serve")
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, the logs and metrics do


def create_app(state: ServerState) -> FastAPI:
    """The app over a (possibly still loading) server state."""
    app = FastAPI(title="edge-hired", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    _add_error_handlers(app)
    _add_counting(app, state)
    _add_routes(app, state)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health")
    async def health() -> JSONResponse:
        if state.ready is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=PROMETHEUS_TYPE)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        _check_key(state, request)
        name = state.config.model_name
        card = {"id": name, "object": "model", "created": 0, "owned_by": "edge-hired"}
        return JSONResponse({"object": "list", "data": [card]})

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        _check_key(state, request)
        if body.model != state.config.model_name:
            raise ApiError(404, f"model {body.model!r} not found", "model", "model_not_found")
        flow = ChatFlow(state.require_ready(), body, state.config.model_name, state.metrics)
        return await with_cancellation(request, _respond(flow, body.stream))


async def _respond(flow: ChatFlow, stream: bool) -> Response:
    """The answer, or the stream that sends it (which watches for a disconnect itself)."""
    await flow.begin()
    if stream:
        return StreamingResponse(flow.stream(), media_type="text/event-stream")
    return JSONResponse(await flow.answer())


async def with_cancellation(request: Request, work: Awaitable[Response]) -> Response:
    """`work`'s response; cancelled (its `finally` cancels the job) if the client leaves first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once it is done
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return Response(status_code=CLIENT_CLOSED)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body was read already, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _check_key(state: ServerState, request: Request) -> None:
    key = state.config.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if given != f"Bearer {key}":
        raise ApiError(401, "invalid or missing API key", None, "invalid_api_key")


def _add_counting(app: FastAPI, state: ServerState) -> None:
    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/v1/chat/completions":
            state.metrics.requests.labels(str(response.status_code)).inc()
        return response


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return await api_error(_request, _validation_error(error))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        return await api_error(_request, ApiError(error.status_code, str(error.detail)))

    @app.exception_handler(Exception)
    async def bug(_request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=error)
        return await api_error(_request, ApiError(500, "internal server error"))


def _validation_error(error: RequestValidationError) -> ApiError:
    """The first schema error as a 400 naming its field (or 'malformed JSON')."""
    first = error.errors()[0] if error.errors() else {}
    if first.get("type") == "json_invalid":
        return bad_request("request body: malformed JSON", None, "invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    return bad_request(f"{param or 'body'}: {first.get('msg', 'invalid request')}", param)
