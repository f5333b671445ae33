"""Whether and how the decode step is compiled: decided once, tried once, with a reason.

`--compile auto|on|off`: auto compiles on CUDA (where the eager step is launch-bound and a CUDA
graph replays the whole step in one launch) and not on a CPU: on the development machine (2
cores, torch 2.13, mid-size preset, context 640) `scripts/bench_decode.py` measured the compiled
step at 0.60x / 0.64x of eager in fp32 and 0.43x / 0.87x in bf16 (batch 1 / 4), after a compile
of 41-94 s: a CPU step is bound by reading the weights, which compiling does not shorten. The
first compile is announced on stderr and timed apart from TTFT. A model whose step does not
compile (e.g. a bitsandbytes build without torch.compile support) says so in one line and
decodes eagerly: same tokens, only slower. bitsandbytes 0.50.2 4-bit and 8-bit compile on the
CPU here (fullgraph, same greedy tokens as eager).

On-disk caches (torch 2.13): inductor's FX graph cache and AOT-autograd cache
(`TORCHINDUCTOR_FX_GRAPH_CACHE`, `TORCHINDUCTOR_AUTOGRAD_CACHE`, both on by default) under
`TORCHINDUCTOR_CACHE_DIR`, which we point at ~/.cache/edge-hired/torchinductor unless set, so a
second process skips inductor's code generation (dynamo still traces the step, a few seconds).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edge_hired.errors import InvalidArgumentError, expected

COMPILE_CHOICES = ("auto", "on", "off")
ANNOUNCEMENT = "compiling the decode step, first request only"
CACHE_DIR = Path("~/.cache/edge-hired/torchinductor")
MAX_BUCKETS = 64  # shapes one process may compile (rows x length buckets)

Step = Callable[..., torch.Tensor]
Compiler = Callable[[Step], Step]


def decide_compile(
    flag: str, device_type: str, unified: bool = False, linear_attention: bool = False
) -> tuple[bool, str]:
    """(compile?, reason) for `--compile` on this device; the target records both.

    `unified`: the GPU shares the host's memory (a Jetson). There auto stays eager: the prefill
    still fills a growing cache that is then copied into the static one, so both sit side by side
    at the peak, and on an 8 GB board that KV is what the token budget is made of.
    `linear_attention`: the decoder has linear-attention layers (Qwen3.5's Gated-DeltaNet), whose
    recurrent state the static rows (keys and values only) do not hold: eager whatever the flag.
    M-RoPE positions alone (Qwen3-VL, Qwen2.5-VL) compile: the step carries each row's [4, B, 1].
    """
    if flag not in COMPILE_CHOICES:
        raise InvalidArgumentError(expected("--compile", " / ".join(COMPILE_CHOICES), flag))
    if linear_attention and flag != "off":
        return False, (
            "decode step eager: linear-attention layers (Qwen3.5) keep a recurrent state "
            "the static KV cache does not hold"
        )
    if flag != "auto":
        return flag == "on", f"decode step {'compiled' if flag == 'on' else 'eager'}: --compile"
    if device_type == "cuda" and unified:
        return False, (
            "decode step eager: auto on unified memory (a static cache would double the KV "
            "at the peak; --compile on to force)"
        )
    if device_type == "cuda":
        return True, "decode step compiled (static KV cache, CUDA graphs): auto on CUDA"
    return False, "decode step eager: auto on a CPU (compiling measured no gain here)"


def torch_compiler(device_type: str) -> Compiler:
    """torch.compile as the step needs it: whole graph, fixed shapes, CUDA graphs on CUDA."""
    mode = "reduce-overhead" if device_type == "cuda" else None

    def compile_step(step: Step) -> Step:
        use_disk_caches()
        # every bucket is one more compile of the same code; dynamo's default stops at 8
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, MAX_BUCKETS)
        return torch.compile(step, fullgraph=True, dynamic=False, mode=mode)

    return compile_step


def use_disk_caches() -> None:
    """Inductor's on-disk caches in our cache directory (an explicit setting wins)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE_DIR.expanduser()))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


def _announce(line: str) -> None:
    print(f"[edge-hired] {line}", file=sys.stderr)


@dataclass
class CompileRecord:
    """What compiling cost: seconds of each shape's first (compiling) call, and any fallback."""

    seconds: dict[Any, float] = field(default_factory=dict)
    fallback: str | None = None  # why the step runs eagerly, when compiling failed

    def take_seconds(self) -> float:
        """Compile seconds since the last call (the request that paid them reports them)."""
        total = sum(self.seconds.values())
        self.seconds = {key: 0.0 for key in self.seconds}
        return total


class GuardedStep:
    """The compiled step, tried once per shape; a failure falls back to the eager step for good.

    `label` names what may not compile (e.g. "bitsandbytes 4bit") in the fallback line.
    """

    def __init__(self, eager: Step, compiler: Compiler, label: str, announce=_announce) -> None:
        self.eager, self.label, self.announce = eager, label, announce
        self.compiled: Step | None = compiler(eager)
        self.record = CompileRecord()

    def __call__(self, shape: Any, *args: Any) -> torch.Tensor:
        """Run the step for a cache of `shape` (the first call per shape compiles)."""
        if self.compiled is None or shape in self.record.seconds:
            return (self.compiled or self.eager)(*args)
        if not self.record.seconds:
            self.announce(ANNOUNCEMENT)
        start = time.perf_counter()
        try:
            out = self.compiled(*args)
        except Exception as error:  # any compiler failure: decode eagerly, say why once
            return self._fall_back(error, args)
        self.record.seconds[shape] = time.perf_counter() - start
        return out

    def _fall_back(self, error: Exception, args: tuple) -> torch.Tensor:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        self.record.fallback = f"{self.label} does not compile here ({reason}); decoding eagerly"
        self.announce(self.record.fallback)
        self.compiled = None
        return self.eager(*args)
