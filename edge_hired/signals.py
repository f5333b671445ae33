"""SIGTERM as an exception, so `finally` blocks clean up what SIGINT already cleans up.

systemd, docker and Kubernetes stop a process with SIGTERM, whose default action ends it at
once: no `finally`, no context-manager exit, so an export's staging directory stays behind.
Inside `sigterm_raises()` SIGTERM raises `Terminated` instead (a BaseException, like
KeyboardInterrupt, so `except Exception` never swallows it); the CLI exits 143 (128 + 15).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived while work that must clean up was running."""


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While open (main thread only: Python delivers signals there), SIGTERM raises Terminated."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
