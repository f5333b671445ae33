"""Side-by-side benchmark of `edge-hired serve` on the CPU, in one run, against a real server.

On the `mid-llava-next` preset (ViT-L/14-336 encoder, ~1.07B Llama, random weights, bf16) and a
672x672 image (5 partitions, 2880 visual tokens, HiRED 20% keeps 576) it measures:

1. TTFT of a follow-up question about the same image (image cache hit: only the new text is
   prefilled) against the first question (encode + select + prefill); goal <= 0.15x.
2. Aggregate decode tokens/s with 1, 2, 4 and 8 concurrent clients (follow-ups, so the batch
   is decode-bound); goal >= 2.5x at 4 clients vs 1.
3. The server process's measured peak RSS (VmHWM) under the --memory-cap it ran with (memory
   admission holds every request in flight to that cap).

    .venv/bin/python scripts/bench_serve.py            # mid-size model, ~5-10 min on 2 cores
    .venv/bin/python scripts/bench_serve.py --quick    # tiny model, smoke run
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from edge_hired.models.tiny import default_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 2, 4, 8)
QUESTIONS = [f"Question {i}: what is in the picture?" for i in range(8)]


def picture(seed: int, size: int = 672) -> str:
    """A data URL of a deterministic noisy picture (distinct bytes per seed)."""
    image = Image.effect_noise((size, size), 40 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, cap_gib: float, dtype: str) -> tuple[str, subprocess.Popen]:
    """`edge-hired serve` in a subprocess; returns its URL once /health says ok."""
    port = free_port()
    command = [sys.executable, "-m", "edge_hired.cli.main", "serve", "--model", model]
    command += ["--model-name", "bench", "--port", str(port), "--dtype", dtype, "--device", "cpu"]
    command += ["--budget", "0.2", "--max-batch", "8", "--memory-cap", f"{cap_gib:.3f}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return base, process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        time.sleep(0.5)
    raise SystemExit("server did not become healthy")


def ask(base: str, url: str, question: str, max_tokens: int) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=900)
    response.raise_for_status()
    return response.json()


def ttft_rounds(base: str, rounds: int) -> tuple[list[float], list[float]]:
    """Server-side TTFT of a first question (new image) and a follow-up (same image)."""
    first, follow = [], []
    for seed in range(rounds):
        url = picture(seed)
        a = ask(base, url, QUESTIONS[0], 2)["hired"]
        b = ask(base, url, QUESTIONS[1], 2)["hired"]
        assert a["image_cache"] == "miss" and b["image_cache"] == "hit", (a, b)
        first.append(a["ttft_s"])
        follow.append(b["ttft_s"])
    return first, follow


def throughput(base: str, url: str, clients: int, max_tokens: int) -> float:
    """Aggregate generated tokens per second with `clients` concurrent follow-up questions."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda q: ask(base, url, q, max_tokens), QUESTIONS[:clients]))
    wall = time.perf_counter() - start
    return sum(a["usage"]["completion_tokens"] for a in answers) / wall


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model smoke run")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory-cap", type=float, default=12.0, metavar="GIB")
    args = parser.parse_args()
    preset = "tiny-llava-next" if args.quick else "mid-llava-next"
    model = str(default_checkpoint(preset))
    dtype = "fp32" if args.quick else "bf16"
    base, process = start_server(model, args.memory_cap, dtype)
    try:
        report(base, process, preset, args)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    return 0


def report(base: str, process: subprocess.Popen, preset: str, args) -> None:
    first, follow = ttft_rounds(base, args.rounds)
    url = picture(0)
    throughput(base, url, 1, 4)  # warm-up of the decode path
    rates = {n: throughput(base, url, n, args.max_tokens) for n in CLIENTS}
    peak = peak_rss_bytes(process.pid)
    ratio = statistics.median(follow) / statistics.median(first)
    print(f"\nbench_serve: {preset}, 672x672 image, HiRED 20% (576 of 2880 visual tokens)")
    print(f"{'TTFT first question (s)':<34} {statistics.median(first):8.3f}   all {first}")
    print(f"{'TTFT follow-up, cache hit (s)':<34} {statistics.median(follow):8.3f}   all {follow}")
    print(f"{'follow-up / first':<34} {ratio:8.3f}x  (goal <= 0.15x)")
    for n in CLIENTS:
        print(
            f"{f'decode, {n} concurrent (tok/s)':<34} {rates[n]:8.2f}   x{rates[n] / rates[1]:.2f}"
        )
    print(f"{'4 vs 1 clients':<34} {rates[4] / rates[1]:8.2f}x  (goal >= 2.5x)")
    label = "peak RSS of the server (GiB)"
    print(f"{label:<34} {peak / 2**30:8.2f}   under --memory-cap {args.memory_cap} GiB")
    pressure = Path("/proc/pressure/cpu")
    if pressure.exists():
        print(f"cpu pressure: {pressure.read_text().splitlines()[0]}")


if __name__ == "__main__":
    sys.exit(main())
