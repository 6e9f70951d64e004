# Shared by scripts/setup.sh and scripts/setup-stack.sh (sourced, not run).

# A Python >= 3.12 (Llama Stack requires it): $PYTHON, then the usual names, then pyenv's versions.
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

# make_venv DIR: creates DIR with a Python >= 3.12 unless it exists
make_venv() {
  local venv="$1" py
  [ -x "$venv/bin/python" ] && return 0
  py="$(find_python)" || {
    echo "trl-nats needs Python 3.12 or newer (Llama Stack requires it) and none was found." >&2
    echo "Install one (e.g. 'pyenv install 3.12' or your OS package) or set PYTHON=/path/to/python3.12." >&2
    return 1
  }
  echo "creating $venv with $py ($("$py" --version))" >&2
  "$py" -m venv "$venv"
}

# install_once VENV MESSAGE STAMP_INPUTS... -- PIP_ARGS...: pip install (saying MESSAGE) unless
# the inputs' hash is the one stamped by the last install
install_once() {
  local venv="$1" message="$2"; shift 2
  local inputs=()
  while [ "$1" != "--" ]; do inputs+=("$1"); shift; done
  shift
  local stamp="$venv/.trl-nats-installed" want log
  want="$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)"
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  echo "$message" >&2
  log="$venv/install.log"
  if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install "$@"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "installing failed; the whole log is in $log" >&2
    return 1
  fi
  echo "$want" > "$stamp"
}
