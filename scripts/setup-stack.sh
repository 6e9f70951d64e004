#!/usr/bin/env bash
# Makes the venv of one Llama Stack host besides the main .venv (which has llama-stack 0.6.1):
#   scripts/setup-stack.sh llama-stack-0.7   ->  $TRL_NATS_VENV_LLAMA_STACK_0_7 or <repo>/.venv-llama-stack-0.7
#   scripts/setup-stack.sh ogx               ->  $TRL_NATS_VENV_OGX or <repo>/.venv-ogx
# with only trl-nats, the provider and that host (no torch), pinned by constraints-<host>.txt.
# Several Llama Stack versions cannot share one venv. Re-running reinstalls only when the pins
# or a pyproject.toml changed. Prints the venv path. (llama-stack-0.6 is the main .venv: setup.sh.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/lib.sh"

case "${1:-}" in
  llama-stack-0.7) venv="${TRL_NATS_VENV_LLAMA_STACK_0_7:-$root/.venv-llama-stack-0.7}"
                   pins="$root/constraints-llama-stack-0.7.txt" ;;
  ogx)             venv="${TRL_NATS_VENV_OGX:-$root/.venv-ogx}"
                   pins="$root/constraints-ogx.txt" ;;
  llama-stack-0.6) exec "$root/scripts/setup.sh" ;;
  *) echo "usage: scripts/setup-stack.sh llama-stack-0.7|ogx|llama-stack-0.6" >&2; exit 2 ;;
esac

make_venv "$venv"
install_once "$venv" "installing trl-nats and the provider for $1 into $venv (first time: about a minute, no torch)" \
  "$root/pyproject.toml" "$root/provider/pyproject.toml" "$pins" -- \
  -c "$pins" -e "$root" -e "$root/provider[$1]"
echo "$venv"
