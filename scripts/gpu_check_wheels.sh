#!/usr/bin/env bash
# Prepare .gpu_wheels/ (git-ignored): the wheels scripts/gpu_check.py needs on a lent GPU machine
# that has torch, transformers and onnxruntime but no pydantic or bitsandbytes, and no network.
#
#   scripts/gpu_check_wheels.sh            # here, with network: downloads ~26 MB of wheels
#
# Then, on the GPU machine, in the repository root with .gpu_wheels/ carried along (one command):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu_wheels/*.whl && PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --out gpu_check.json
#
# Checked against /work/.library/device/KINDS.md (nvidia-h100-x1 / nvidia-h200, image 'cuda'):
# python3 is CPython 3.12 (x86_64) with pip, torch 2.11.0+cu130, transformers 5.17.0,
# tokenizers 0.23.2, huggingface-hub 1.33.0, accelerate 1.15.0, safetensors 0.8.0, onnx 1.23.1,
# onnxruntime 1.30.0 (the CPU build), nvidia-ml-py; no pydantic, no bitsandbytes. So this carries
# pydantic (+ pydantic-core, annotated-types, typing-inspection), bitsandbytes, and the
# transformers this project is checked with (5.17 is older than the lowest it supports) with a
# regex new enough for it. bitsandbytes is slimmed to its CPU and CUDA 13 libraries (the machine's
# torch is built for CUDA 13.0): the full wheel (43 MB) would not fit the 64 MiB a call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.gpu_wheels
PY=${PYTHON:-python3}

pin() {  # NAME==VERSION as constraints/cpu.txt pins it, so the GPU runs what the CPU tests ran
    grep -E "^$1==" constraints/cpu.txt || { echo "gpu_check_wheels: $1 not pinned in constraints/cpu.txt" >&2; exit 2; }
}

rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$DEST" \
    "$(pin bitsandbytes)" "$(pin pydantic)" "$(pin pydantic-core)" "$(pin transformers)" \
    annotated-types==0.8.0 typing-inspection==0.4.5 regex==2026.12.2

# Rewrite the bitsandbytes wheel without the libraries of other CUDA majors, ROCm and XPU; its
# RECORD loses their lines, so the wheel stays consistent.
"$PY" - "$DEST"/bitsandbytes-*.whl <<'PYEOF'
import re
import sys
import zipfile
from pathlib import Path

path = Path(sys.argv[1])
unused = re.compile(r"libbitsandbytes_(cuda1[0-2]\d|rocm\d+|xpu\d+)\.so")
slim = path.with_suffix(".slim")
with zipfile.ZipFile(path) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
    for item in source.infolist():
        if unused.search(item.filename):
            continue
        data = source.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(line for line in lines if not unused.search(line)).encode()
        out.writestr(item, data)
slim.replace(path)
PYEOF
du -sh "$DEST"
ls "$DEST"
