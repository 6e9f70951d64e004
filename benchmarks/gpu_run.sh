#!/usr/bin/env bash
# The GPU benchmark in one command, on a machine with CUDA, torch and transformers but maybe without TRL,
# datasets or NATS: installs the wheels in .whl/ (from benchmarks/gpu_wheels.sh) if there are any, checks
# the imports, then runs benchmarks/gpu_dpo.py. Extra arguments go to gpu_dpo.py. Output lines go to
# $OUT/gpu_dpo.log (and the JSON lines to $OUT/gpu_dpo.jsonl); without $OUT, to runs/gpu_dpo/.
#
#   bash benchmarks/gpu_run.sh [--rounds 2] [--tiny] ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
# The folder's path must contain "site-packages": dill pickles modules from anywhere else by value, and
# datasets' fingerprinting then fails (FACTS.md, GPU section).
site=/tmp/trl-nats-gpu/site-packages
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$site/bin:$PATH"  # nats-server
fi
export PYTHONPATH="$root:$root/agents${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
out="${OUT:-$root/runs/gpu_dpo}"
mkdir -p "$out"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$python" - <<'EOF'
import importlib, shutil
for name in ("torch", "transformers", "accelerate", "trl", "datasets", "nats", "msgspec", "liger_kernel"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # liger is optional; the rest the benchmark needs
        print(f"{name} MISSING: {type(exc).__name__}: {exc}")
print("nats-server", shutil.which("nats-server"))
EOF
  "$python" benchmarks/gpu_dpo.py --out /tmp/trl-nats-gpu/work "$@"
} 2>&1 | tee "$out/gpu_dpo.log"
grep '^{' "$out/gpu_dpo.log" >"$out/gpu_dpo.jsonl" || true
