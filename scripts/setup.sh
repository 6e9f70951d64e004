#!/usr/bin/env bash
# Creates .venv with Python >= 3.12 and installs the three packages (core, agent, provider on
# llama-stack 0.6.1) plus the test tools, pinned by constraints.txt. Re-running is cheap: it
# reinstalls only when a pyproject.toml or constraints.txt changed. Prints the venv path.
# --stack llama-stack-0.7|ogx (repeatable) also makes that host's own venv (scripts/setup-stack.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TRL_NATS_VENV:-$root/.venv}"
. "$root/scripts/lib.sh"

stacks=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stacks+=("$2"); shift 2 ;;
    *) echo "usage: scripts/setup.sh [--stack llama-stack-0.7|ogx]..." >&2; exit 2 ;;
  esac
done

make_venv "$venv"
install_once "$venv" "installing trl-nats, its agent and provider into $venv (first time: a few minutes, ~6 GB with torch)" \
  "$root/pyproject.toml" "$root/agents/pyproject.toml" "$root/provider/pyproject.toml" \
  "$root/constraints.txt" -- -c "$root/constraints.txt" \
  -e "$root[dev,plot]" -e "$root/agents[lora]" -e "$root/provider[llama-stack-0.6,openai]"
for s in "${stacks[@]}"; do
  "$root/scripts/setup-stack.sh" "$s" >/dev/null
done
echo "$venv"
