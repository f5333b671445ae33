"""Every client mistake is an OpenAI-shaped 4xx with the documented status; the server survives."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from edge_hired.serve.config import ServeConfig
from tests.helpers import textured_image
from tests.integration.serve_support import data_url, thread_server

pytestmark = pytest.mark.integration

MODEL = "tiny"
KEY = "sekrit"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("media")
    textured_image(200, 300).save(directory / "inside.png")
    return directory


@pytest.fixture(scope="module")
def base(tiny_next_dir: Path, media: Path):
    config = ServeConfig(
        model=str(tiny_next_dir),
        model_name=MODEL,
        device="cpu",
        api_key=KEY,
        media_dir=media,
        max_image_mb=1.0,
    )
    with thread_server(config) as url:
        yield url


def post(base: str, body: object, key: str | None = KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, (bytes, str)):
        headers["Content-Type"] = "application/json"
        return httpx.post(
            f"{base}/v1/chat/completions", content=body, headers=headers, timeout=60, **kwargs
        )
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=60)


def with_image(url: str, text: str = "What?", **fields) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}


def b64(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = data_url(textured_image(64, 64))
WHOLE_PNG = png_bytes(textured_image(200, 300, seed=5))
TWO_IMAGES = {
    "model": MODEL,
    "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": GOOD}}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": GOOD}}]},
    ],
}
BAD_REQUESTS = {
    "malformed json": (b'{"model": "tiny", "messages": [', 400, "malformed JSON"),
    "not an object": (b"[1, 2]", 400, "body"),
    "no messages": ({"model": MODEL}, 400, "messages"),
    "empty messages": ({"model": MODEL, "messages": []}, 400, "messages"),
    "bad role": ({"model": MODEL, "messages": [{"role": "x", "content": "a"}]}, 400, "role"),
    "n > 1": (with_image(GOOD, n=2), 400, "n"),
    "two images": (TWO_IMAGES, 400, "at most 1 image"),
    "bad base64": (with_image("data:image/png;base64,@@@@"), 400, "base64"),
    "not image type": (with_image(b64(b"hello", "text/plain")), 400, "image/*"),
    "not image bytes": (with_image(b64(b"hello world, no pixels here")), 400, "complete image"),
    "truncated png": (with_image(b64(WHOLE_PNG[: len(WHOLE_PNG) // 2])), 400, "image"),
    "http url refused": (with_image("http://127.0.0.1:1/x.png"), 400, "data:image"),
    "ftp url": (with_image("ftp://example.org/x.png"), 400, "data:image"),
    "file outside media": (with_image("file:///etc/passwd"), 400, "--media-dir"),
    "budget over 1": (with_image(GOOD, hired={"budget": 1.5}), 400, "budget"),
    "budget and tokens": (with_image(GOOD, hired={"budget": 0.2, "tokens": 9}), 400, "not both"),
    "unknown strategy": (with_image(GOOD, hired={"strategy": "magic"}), 400, "strategy"),
    "unknown hired field": (with_image(GOOD, hired={"ratio": 0.2}), 400, "ratio"),
    "temperature 3": (with_image(GOOD, temperature=3), 400, "temperature"),
    "top_p 0": (with_image(GOOD, top_p=0), 400, "top_p"),
    "max_tokens 0": (with_image(GOOD, max_tokens=0), 400, "max_tokens"),
    "too long": (with_image(GOOD, max_tokens=100_000), 400, "positions"),
    "unknown model": ({**with_image(GOOD), "model": "gpt-9"}, 404, "gpt-9"),
    "over max-image-mb": (with_image(b64(b"\0" * (2 << 20))), 413, "MiB"),
    "over pixel limit": (with_image(b64(png_bytes(Image.new("1", (9000, 9000))))), 413, "pixel"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_its_status_and_openai_error_shape(base, name) -> None:
    body, status, words = BAD_REQUESTS[name]
    response = post(base, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words in error["message"] or words == error["param"], error
    assert httpx.get(f"{base}/health").status_code == 200


def test_file_url_inside_media_dir_is_served(base, media) -> None:
    response = post(base, with_image((media / "inside.png").as_uri(), max_tokens=2))
    assert response.status_code == 200, response.text
    assert response.json()["hired"]["visual_tokens_total"] > 0


@pytest.mark.parametrize("key", [None, "wrong"])
def test_missing_or_wrong_key_is_401(base, key) -> None:
    response = post(base, with_image(GOOD), key=key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    models = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert models.status_code == 401


def test_unknown_route_is_an_openai_404(base) -> None:
    response = httpx.get(f"{base}/v1/nothing")
    assert response.status_code == 404 and "error" in response.json()


def test_health_is_503_loading_until_the_model_is_loaded(tiny_next_dir) -> None:
    import threading

    import uvicorn

    from edge_hired.runtime.pipeline import Pipeline
    from edge_hired.serve.app import create_app
    from edge_hired.serve.metrics import Metrics
    from edge_hired.serve.server import _lifespan
    from edge_hired.serve.state import ServerState
    from tests.integration.serve_support import free_port, wait_healthy

    release = threading.Event()

    def slow_load() -> Pipeline:
        release.wait(30)
        return Pipeline.from_pretrained(str(tiny_next_dir), device="cpu")

    state = ServerState(ServeConfig(model_name=MODEL), slow_load, None, Metrics())
    app = create_app(state)
    app.router.lifespan_context = _lifespan(state)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_status(f"{base}/health") == 503
        assert httpx.get(f"{base}/health").json() == {"status": "loading"}
        loading = post(base, with_image(GOOD), key=None)
        assert loading.status_code == 503 and loading.headers["Retry-After"] == "5"
        release.set()
        wait_healthy(base)
        assert post(base, with_image(GOOD, max_tokens=2), key=None).status_code == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


def wait_for_status(url: str) -> int:
    import time

    for _ in range(200):
        try:
            return httpx.get(url, timeout=2).status_code
        except httpx.ConnectError:
            time.sleep(0.05)
    raise TimeoutError(url)
