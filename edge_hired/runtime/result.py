"""The outcome of one request: the answer and every figure a user asks about."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RunResult:
    """Answer, kept tokens and measurements of one `run` call (see README for each field)."""

    text: str
    token_ids: list[int]
    strategy: str
    budget_tokens: int
    visual_tokens_total: int
    visual_tokens_kept: int
    grid: list[int]
    kept: list[list[int]]
    partition_budgets: list[int]
    llm_input_tokens: int
    ttft_s: float
    decode_tokens_per_s: float
    peak_rss_mib: float
    image_size: list[int]
    timings_s: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    compute_dtype: str | None = None  # of the LLM and projector, e.g. "float16"
    encoder_provider: str | None = None  # ORT provider that really ran, or "torch:<device>"
    device_peak_mib: float | None = None  # device-level peak on a GPU / Jetson; None on a CPU
    signal: str = "cls"  # HiRED's attention signal: "cls" (CLIP) or "received" (SigLIP)
    compile_s: float = 0.0  # compiling the decode step (first request of a shape), not in TTFT

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary."""
        return asdict(self)

    def to_json(self) -> str:
        """One JSON object on one line."""
        return json.dumps(self.to_dict())

    def summary(self) -> str:
        """Human-readable metrics, one line each."""
        kept_pct = 100 * self.visual_tokens_kept / max(self.visual_tokens_total, 1)
        return "\n".join(
            [
                f"strategy        {self.strategy} (budget {self.budget_tokens} tokens)",
                f"visual tokens   {self.visual_tokens_kept} kept of {self.visual_tokens_total}"
                f" ({kept_pct:.1f}%), grid {self.grid[0]}x{self.grid[1]}",
                f"LLM input       {self.llm_input_tokens} tokens",
                f"TTFT            {self.ttft_s:.3f} s",
                f"decode          {self.decode_tokens_per_s:.1f} tokens/s "
                f"({len(self.token_ids)} new)",
                f"peak RSS        {self.peak_rss_mib:.0f} MiB",
                *(
                    [f"device peak     {self.device_peak_mib:.0f} MiB"]
                    if self.device_peak_mib is not None
                    else []
                ),
                *(
                    [f"compile         {self.compile_s:.1f} s (first request)"]
                    if self.compile_s
                    else []
                ),
                f"device          {self.device}, compute {self.compute_dtype or '?'}",
                f"encoder         {self.encoder_provider or '?'}, signal {self.signal}",
            ]
        )
