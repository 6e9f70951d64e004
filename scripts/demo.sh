#!/usr/bin/env bash
# Installs what the demo needs (scripts/setup.sh), then trains a tiny model end to end on this
# machine: embedded nats-server, one agent, and a DPO job with live progress.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/setup.sh")"
cd "$root"
exec "$venv/bin/trl-nats" demo "$@"
