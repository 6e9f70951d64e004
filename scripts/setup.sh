#!/usr/bin/env bash
# Creates .venv with Python >= 3.12 and installs the three packages (core, agent, provider)
# plus the test tools, pinned by constraints.txt. Re-running is cheap: it reinstalls only
# when a pyproject.toml or constraints.txt changed. Source it or run it; prints the venv path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TRL_NATS_VENV:-$root/.venv}"

find_python() {
  local c
  for c in "${PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  # pyenv keeps versions it does not put on PATH
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/3.1[2-9]*/bin/python3; do
      if [ -x "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        echo "$c"; return 0
      fi
    done
  fi
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  py="$(find_python)" || {
    echo "trl-nats needs Python 3.12 or newer (Llama Stack requires it) and none was found." >&2
    echo "Install one (e.g. 'pyenv install 3.12' or your OS package) or set PYTHON=/path/to/python3.12." >&2
    exit 1
  }
  echo "creating $venv with $py ($("$py" --version))" >&2
  "$py" -m venv "$venv"
fi

stamp="$venv/.trl-nats-installed"
want="$(cat "$root/pyproject.toml" "$root/agents/pyproject.toml" "$root/provider/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing trl-nats, its agent and provider into $venv (first time: a few minutes, ~6 GB with torch)" >&2
  log="$venv/install.log"
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -c "$root/constraints.txt" \
           -e "$root[dev,plot]" -e "$root/agents[lora]" -e "$root/provider"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "installing failed; the whole log is in $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
echo "$venv"
