# Sourced by the entry points in tools/: makes sure .venv exists and matches pyproject.toml.
# First use creates it (needs the package registry); later uses cost one hash comparison.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_GITOPS_VENV:-$REPO_ROOT/.venv}"
PY="${PYTHON:-python3}"

_vg_stamp() { sha256sum "$REPO_ROOT/pyproject.toml" | cut -d' ' -f1; }

_vg_setup() {
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$(_vg_stamp)" ]; then return 0; fi
  echo "vllm-gitops: setting up $VENV (first run only)..." >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$REPO_ROOT[dev]" \
      >"$VENV.install.log" 2>&1; then
    echo "vllm-gitops: installing dependencies failed; last lines of $VENV.install.log:" >&2
    tail -n 20 "$VENV.install.log" >&2
    rm -rf "$VENV"
    exit 2
  fi
  _vg_stamp >"$VENV/.stamp"
}

if ! { [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$(_vg_stamp)" ]; }; then
  _vg_setup
fi
export PATH="$VENV/bin:$PATH"
