#!/usr/bin/env bash
# Installs what the demo needs (scripts/setup.sh), then trains a tiny model end to end on this
# machine: embedded nats-server, one agent and a Llama Stack server with the trl_nats provider;
# the shipped preference dataset is registered and preference_optimize is called through
# llama-stack-client, with live progress until the job completes and its artifacts are listed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/setup.sh")"
cd "$root"
exec "$venv/bin/python" -m trl_nats_provider.demo "$@"
