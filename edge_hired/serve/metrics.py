"""Prometheus metrics of one server, in its own registry (so tests can run several servers).

Requests by status, TTFT and end-to-end latency, visual tokens kept, queue depth, batch sizes,
image-cache hits and misses, generated tokens, requests in flight, and memory: the process's
RSS and peak RSS, and the accelerator's allocated bytes when there is one.
"""

from __future__ import annotations

import torch
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from edge_hired.device.memory import peak_rss_mib

PREFIX = "edge_hired"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TOKEN_BUCKETS = (16, 64, 144, 288, 576, 1152, 2304, 2880, 5760)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)


def _rss_bytes() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss)


def _device_bytes() -> float:
    return float(torch.cuda.memory_allocated()) if torch.cuda.is_available() else 0.0


class Metrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests", "chat requests by HTTP status", ["status"], registry=registry
        )
        self.ttft = Histogram(
            f"{PREFIX}_ttft_seconds",
            "time to first token",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            f"{PREFIX}_e2e_seconds",
            "request start to last token",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.visual_kept = Histogram(
            f"{PREFIX}_visual_tokens_kept",
            "visual tokens the LLM received per request",
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "rows per decode step",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "requests waiting", registry=registry)
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight", "requests admitted", registry=registry
        )
        self.cache = Counter(
            f"{PREFIX}_image_cache", "image-cache lookups by result", ["result"], registry=registry
        )
        self.tokens = Counter(f"{PREFIX}_generated_tokens", "tokens generated", registry=registry)
        self._memory_gauges(registry)

    def _memory_gauges(self, registry: CollectorRegistry) -> None:
        Gauge(f"{PREFIX}_rss_bytes", "resident memory", registry=registry).set_function(_rss_bytes)
        Gauge(f"{PREFIX}_peak_rss_bytes", "peak resident memory", registry=registry).set_function(
            lambda: peak_rss_mib() * 2**20
        )
        Gauge(
            f"{PREFIX}_device_allocated_bytes", "accelerator memory allocated", registry=registry
        ).set_function(_device_bytes)

    def observe(self, name: str, value: float) -> None:
        """The scheduler's hook: queue depth and batch sizes."""
        if name == "queue_depth":
            self.queue_depth.set(value)
        elif name == "batch_size":
            self.batch_size.observe(value)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
