"""Helpers of the serve tests: a real server on a free 127.0.0.1 port, in a thread or a process."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from PIL import Image

from edge_hired.serve.config import ServeConfig
from edge_hired.serve.server import make_server
from edge_hired.serve.state import ServerState

START_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wait_healthy(base: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"server at {base} not healthy after {timeout_s} s")


@contextlib.contextmanager
def thread_server(config: ServeConfig) -> Iterator[str]:
    """Serve `config` (its port replaced by a free one) in a thread; yields the base URL."""
    with served(config) as (base, _state):
        yield base


@contextlib.contextmanager
def served(config: ServeConfig) -> Iterator[tuple[str, ServerState]]:
    """As `thread_server`, yielding the server's state too (its scheduler, once loaded)."""
    from dataclasses import replace

    config = replace(config, host="127.0.0.1", port=free_port())
    server, state = make_server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        wait_healthy(base)
        yield base, state
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def process_server(*flags: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`edge-hired serve FLAGS` in a subprocess on a free port; yields (base URL, process).

    The server's stderr goes to a file, never a pipe (a full pipe would stall the server), and
    is printed when the test fails.
    """
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "edge_hired.cli.main", "serve", "--port", str(port), *flags]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, env=env, stderr=log, text=True)
        try:
            wait_healthy(f"http://127.0.0.1:{port}")
            yield f"http://127.0.0.1:{port}", process
        except BaseException:
            log.seek(0)
            print("server stderr:\n" + log.read()[-4000:], file=sys.stderr)
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(30)


def metric_values(base: str) -> dict[str, float]:
    """The server's /metrics samples by their full name (labels included)."""
    values = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
