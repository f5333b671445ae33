#!/usr/bin/env bash
# Create (if missing) and fill the project's virtual environment for this machine.
# The targets, their versions and what was verified on each: docs/support-matrix.md.
#
# The machine kind decides the torch build, the ONNX Runtime wheel and the pins, once, here:
#   cpu    - Python >= 3.11, torch==2.13.0 CPU wheel + onnxruntime (constraints/cpu.txt)
#   cuda   - x86_64 + NVIDIA driver for CUDA 13: PyPI's torch==2.13.0 (a CUDA 13 build) and
#            onnxruntime-gpu (PyPI's is built for CUDA 13 too: the majors must match)
#   jetson - JetPack 6.1/6.2 (Python 3.10, constraints/jetson.txt) or 7.x (Python 3.12,
#            constraints/jetson7.txt): the venv sees the board's torch (--system-site-packages),
#            which must be a FINAL torch >= 2.6 (NVIDIA's Jetson AI Lab index). The install keeps
#            that exact build, and stops with one line if torch, CUDA or numpy's major changed.
#            onnxruntime-gpu and bitsandbytes come from NVIDIA's Jetson index (JETSON_PIP_INDEX).
# Override the guess with EDGE_HIRED_TARGET=cpu|cuda|jetson; CONSTRAINTS=file overrides the pins
# (`make test-lowest` uses constraints/lowest.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
target=${EDGE_HIRED_TARGET:-auto}

if [ "$target" = auto ]; then
  if [ -f /etc/nv_tegra_release ]; then target=jetson
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then target=cuda
  else target=cpu; fi
fi
echo "edge-hired install: target '$target' (override with EDGE_HIRED_TARGET=cpu|cuda|jetson)"

case "$target" in
  cpu|cuda) constraints=${CONSTRAINTS:-constraints/cpu.txt} ;;
  jetson)
    if "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
      constraints=${CONSTRAINTS:-constraints/jetson7.txt}
    else constraints=${CONSTRAINTS:-constraints/jetson.txt}; fi ;;
  *) echo "unknown EDGE_HIRED_TARGET '$target' (expected cpu, cuda or jetson)" >&2; exit 2 ;;
esac
check=(-m edge_hired.device.install_check)
"$PYTHON" "${check[@]}" python "$constraints"

venv_flags=()
[ "$target" = jetson ] && venv_flags+=(--system-site-packages)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "${venv_flags[@]}" "$VENV"
py="$VENV/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q -c "$constraints")

case "$target" in
  cpu)
    "${pip[@]}" torch==2.13.0
    "${pip[@]}" -e '.[cpu,dev]'
    ;;
  cuda)
    "${pip[@]}" torch==2.13.0
    "${pip[@]}" -e '.[gpu,dev]'
    "$py" -c 'import torch; assert torch.cuda.is_available()' || {
      echo "edge-hired install: torch $("$py" -c 'import torch; print(torch.__version__)') does not see CUDA: its CUDA 13 build needs an NVIDIA driver >= 580" >&2
      exit 1; }
    ;;
  jetson)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # Refuses a torch that transformers would disable; pins the board's build and numpy major.
    "$py" "${check[@]}" before "$work/before.json" "$work/board.txt"
    "${pip[@]}" -c "$work/board.txt" -e '.[jetson,dev]'
    if [ -n "${JETSON_PIP_INDEX:-}" ]; then
      # PyPI's aarch64 bitsandbytes (pulled by the line above) imports on a Jetson and fails at the
      # first 4-bit kernel ("named symbol not found"); the Jetson index builds for sm_87.
      "${pip[@]}" -c "$work/board.txt" --index-url "$JETSON_PIP_INDEX" onnxruntime-gpu
      "${pip[@]}" --force-reinstall --no-deps --index-url "$JETSON_PIP_INDEX" bitsandbytes
    else
      cat >&2 <<'EOF_JETSON'
JETSON_PIP_INDEX is not set (NVIDIA's Jetson AI Lab index, e.g. https://pypi.jetson-ai-lab.io/jp6/cu126;
see docs/support-matrix.md), so:
  - onnxruntime-gpu is NOT installed: bundles need it (PyPI has no aarch64 GPU build).
  - bitsandbytes is PyPI's aarch64 wheel, which fails on Orin at the first 4-bit kernel. Build it
    for sm_87 (make -j4: more jobs run out of memory on 8 GB boards):
      git clone https://github.com/bitsandbytes-foundation/bitsandbytes && cd bitsandbytes
      cmake -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=87 -S . && make -j4
      ../.venv/bin/python -m pip install --force-reinstall --no-deps .
    or export with --quant none.
EOF_JETSON
    fi
    # Same torch build, CUDA still visible, numpy's major unchanged: else one line and stop.
    "$py" "${check[@]}" after "$work/before.json"
    ;;
esac
touch "$VENV/.edge-hired-installed"
