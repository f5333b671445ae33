"""The server's settings, as parsed from the command line (one frozen object, no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_hired.runtime.pipeline import SelectionOptions

if TYPE_CHECKING:
    from edge_hired.runtime.target import Target


@dataclass(frozen=True)
class ServeConfig:
    """Everything `serve` was started with; request fields default to these.

    `target` is the resolved target (`edge-hired serve` builds it from the same runtime flags as
    `run`); a library caller may give the loose fields instead (model / bundle, device, dtype,
    profile, memory cap, limits) and `make_server` resolves them once.
    """

    model: str | None = None
    bundle: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str = "edge-hired"
    selection: SelectionOptions = SelectionOptions()
    profile: str | None = None
    memory_cap_gib: float | None = None
    ttft_target_s: float | None = None
    headless: bool = False
    max_batch: int = 4
    max_queue: int = 32
    api_key: str | None = None
    max_image_mb: float = 20.0
    allow_image_urls: bool = False
    media_dir: Path | None = None
    cache_mb: float = 256.0
    default_max_tokens: int = 64
    device: str = "auto"
    dtype: str | None = None
    graceful_timeout_s: float = 30.0
    target: Target | None = None

    @property
    def max_image_bytes(self) -> int:
        """--max-image-mb in bytes (MiB, as the flag says)."""
        return int(self.max_image_mb * 2**20)

    @property
    def wants_plan(self) -> bool:
        """Whether requests are planned (--profile, --memory-cap or --ttft-target)."""
        limits = (self.profile, self.memory_cap_gib, self.ttft_target_s)
        return any(limit is not None for limit in limits)
