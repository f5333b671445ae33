"""http(s) images only with --allow-image-urls: size-limited, and no redirect to another host."""

from __future__ import annotations

import http.server
import io
import threading
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from edge_hired.serve.config import ServeConfig
from tests.helpers import textured_image
from tests.integration.serve_support import thread_server

pytestmark = pytest.mark.integration

MODEL = "tiny"


def png() -> bytes:
    buffer = io.BytesIO()
    textured_image(120, 160, seed=2).save(buffer, format="PNG")
    return buffer.getvalue()


class Images(http.server.BaseHTTPRequestHandler):
    """/img.png, /big.png (over the limit), /hop (same host), /away (to `localhost`)."""

    routes: ClassVar[dict[str, bytes]] = {"/img.png": png(), "/big.png": b"\0" * (3 << 20)}

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        redirects = {
            "/hop": f"http://127.0.0.1:{port}/img.png",
            "/away": f"http://localhost:{port}/img.png",
        }
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.end_headers()
            return
        data = self.routes.get(self.path)
        self.send_response(200 if data else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def image_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def base(tiny_next_dir: Path):
    config = ServeConfig(
        model=str(tiny_next_dir),
        model_name=MODEL,
        device="cpu",
        allow_image_urls=True,
        max_image_mb=1.0,
    )
    with thread_server(config) as url:
        yield url


def ask(base: str, url: str) -> httpx.Response:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Hi"}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/img.png", 200, None),
        ("/hop", 200, None),
        ("/away", 400, "another host"),
        ("/big.png", 413, "MiB"),
        ("/missing.png", 400, "HTTP 200"),
    ],
)
def test_url_images_are_fetched_within_limits(base, image_host, path, status, words) -> None:
    response = ask(base, image_host + path)
    assert response.status_code == status, response.text
    if words:
        assert words in response.json()["error"]["message"]
    else:
        assert response.json()["hired"]["visual_tokens_total"] > 0


def test_unreachable_host_is_a_400(base) -> None:
    response = ask(base, "http://127.0.0.1:9/x.png")
    assert response.status_code == 400 and "fetch failed" in response.json()["error"]["message"]
