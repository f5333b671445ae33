#!/usr/bin/env bash
# Create (if missing) and fill the project's virtual environment for this machine.
#
# The machine kind decides the torch build and the ONNX Runtime wheel, once, here:
#   cpu    - torch==2.13.0 CPU wheel + onnxruntime (pinned by constraints/cpu.txt)
#   cuda   - an x86_64 machine with an NVIDIA driver: PyPI's CUDA torch + onnxruntime-gpu
#   jetson - JetPack: the venv sees the system's JetPack torch (--system-site-packages);
#            onnxruntime-gpu comes from NVIDIA's Jetson index, not PyPI (set JETSON_PIP_INDEX)
# Override the guess with EDGE_HIRED_TARGET=cpu|cuda|jetson.
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
target=${EDGE_HIRED_TARGET:-auto}

if [ "$target" = auto ]; then
  if [ -f /etc/nv_tegra_release ]; then target=jetson
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then target=cuda
  else target=cpu; fi
fi
echo "edge-hired install: target '$target' (override with EDGE_HIRED_TARGET=cpu|cuda|jetson)"

venv_flags=()
[ "$target" = jetson ] && venv_flags+=(--system-site-packages)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "${venv_flags[@]}" "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

case "$target" in
  cpu)
    "${pip[@]}" -c constraints/cpu.txt torch==2.13.0
    "${pip[@]}" -c constraints/cpu.txt -e '.[cpu,dev]'
    ;;
  cuda)
    "${pip[@]}" torch
    "${pip[@]}" -e '.[gpu,dev]'
    ;;
  jetson)
    "$VENV/bin/python" -c 'import torch; assert torch.cuda.is_available()' || {
      echo "JetPack's CUDA torch is not visible: install NVIDIA's torch wheel for your JetPack first." >&2
      exit 1; }
    # pyproject asks torch>=2.3.0a0, so JetPack's pre-release torch (2.3.0a0+...nv24.02) is kept.
    "${pip[@]}" -e '.[jetson,dev]'
    if [ -n "${JETSON_PIP_INDEX:-}" ]; then
      # PyPI's aarch64 bitsandbytes (pulled by the line above) imports on a Jetson and fails at the
      # first 4-bit kernel ("named symbol not found"); the Jetson index builds for sm_87.
      "${pip[@]}" --index-url "$JETSON_PIP_INDEX" onnxruntime-gpu
      "${pip[@]}" --force-reinstall --no-deps --index-url "$JETSON_PIP_INDEX" bitsandbytes
    else
      cat >&2 <<'EOF_JETSON'
JETSON_PIP_INDEX is not set (NVIDIA's Jetson AI Lab index; see README "Jetson"), so:
  - onnxruntime-gpu is NOT installed: bundles need it (PyPI has no aarch64 GPU build).
  - bitsandbytes is PyPI's aarch64 wheel, which fails on Orin at the first 4-bit kernel. Build it
    for sm_87 (make -j4: more jobs run out of memory on 8 GB boards):
      git clone https://github.com/bitsandbytes-foundation/bitsandbytes && cd bitsandbytes
      cmake -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=87 -S . && make -j4
      ../.venv/bin/python -m pip install --force-reinstall --no-deps .
    or export with --quant none.
EOF_JETSON
    fi
    ;;
  *) echo "unknown EDGE_HIRED_TARGET '$target' (expected cpu, cuda or jetson)" >&2; exit 2 ;;
esac
touch "$VENV/.edge-hired-installed"
