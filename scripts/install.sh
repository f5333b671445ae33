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
    "${pip[@]}" -e '.[jetson,dev]'
    if [ -n "${JETSON_PIP_INDEX:-}" ]; then
      "${pip[@]}" --index-url "$JETSON_PIP_INDEX" onnxruntime-gpu
    else
      echo "Set JETSON_PIP_INDEX to NVIDIA's Jetson index for onnxruntime-gpu (see README)." >&2
    fi
    ;;
  *) echo "unknown EDGE_HIRED_TARGET '$target' (expected cpu, cuda or jetson)" >&2; exit 2 ;;
esac
touch "$VENV/.edge-hired-installed"
