#!/usr/bin/env bash
# Installs what the demo needs (scripts/setup.sh), then trains a tiny model end to end on this
# machine: embedded nats-server, one agent and a Llama Stack server with the trl_nats provider;
# the shipped preference dataset is registered (or uploaded to the Files API) and
# preference_optimize is called over HTTP, with live progress until the job completes and its
# artifacts are listed.
#   ./scripts/demo.sh                 llama-stack 0.6.1 (the main .venv)
#   ./scripts/demo.sh --stack 0.7     llama-stack 0.7.x (its own venv, made by scripts/setup-stack.sh)
#   ./scripts/demo.sh --stack ogx     OGX 1.x (its own venv; plain HTTP on loopback: --insecure)
# Other options go to python -m trl_nats_provider.demo (--steps, --gpus, --device, --port, --state-dir).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/setup.sh")"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stack)
      case "$2" in
        0.6|llama-stack-0.6) args+=(--stack 0.6) ;;
        0.7|llama-stack-0.7) args+=(--stack 0.7 --stack-bin "$("$root/scripts/setup-stack.sh" llama-stack-0.7)/bin") ;;
        ogx) args+=(--stack ogx --stack-bin "$("$root/scripts/setup-stack.sh" ogx)/bin") ;;
        *) echo "--stack takes 0.6, 0.7 or ogx, not '$2'" >&2; exit 2 ;;
      esac
      shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
cd "$root"
exec "$venv/bin/python" -m trl_nats_provider.demo "${args[@]}"
