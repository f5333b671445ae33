"""Measure, at export, how much memory the ONNX encoder needs per partition.

Each probe runs in a fresh process so that the RSS high-water mark is the encoder's alone:
activation = peak during one run - RSS after the session loaded its weights. The slope between
one and several partitions is what the planner scales by the image's partition count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_hired.units import MIB

_PROBE = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from edge_hired.device.memory import current_rss_mib, peak_rss_mib, reset_peak_rss
path, partitions, dtype, side = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
pixels = np.zeros((partitions, 3, side, side), dtype=dtype)
loaded = current_rss_mib()
reset_peak_rss()
session.run(None, {"pixel_values": pixels})
print(json.dumps({"activation_mib": peak_rss_mib() - loaded}))
"""


def activation_mib(path: Path, partitions: int, dtype: str, side: int) -> float:
    """Peak MiB above the loaded session for one run of `partitions` partitions."""
    cmd = [sys.executable, "-c", _PROBE, str(path), str(partitions), dtype, str(side)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["activation_mib"])


def activation_bytes_per_partition(path: Path, dtype: str, side: int, many: int = 3) -> int:
    """Bytes the encoder's activations grow by per extra partition (never negative)."""
    one = activation_mib(path, 1, dtype, side)
    slope = (activation_mib(path, many, dtype, side) - one) / (many - 1)
    per_partition = slope if slope > 0 else one  # a non-positive slope is noise: use one run
    return int(per_partition * MIB)
