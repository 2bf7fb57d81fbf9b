#!/usr/bin/env bash
# Ensures the schemathesis CLI is installed and prints the path of its `st` executable.
#
#   ./ops/scripts/schemathesis.sh        # prints e.g. ~/.cache/antcode/schemathesis-venv/bin/st
#
# Installs schemathesis (PyPI) into a venv under ~/.cache/antcode the first time, with uv (the
# OpenAPI fuzz test, control/tests/schemathesis.rs, calls this). Fails with a clear message when
# uv or the package registry is unavailable: the fuzz pass is never silently skipped.
# Safe to call from several processes at once (a lock serialises the install).
set -euo pipefail

CACHE="${ANTCODE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/antcode}"
VENV="$CACHE/schemathesis-venv"

log() { printf '[schemathesis] %s\n' "$*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/schemathesis.lock"
flock -w 600 9 || { log "another schemathesis.sh has held $CACHE/schemathesis.lock for 10 minutes"; exit 1; }

if [ ! -x "$VENV/bin/st" ]; then
  if ! command -v uv >/dev/null 2>&1; then
    log "uv is not on PATH; install it (pip install uv) so the fuzz test can install schemathesis"
    exit 1
  fi
  log "installing schemathesis into $VENV"
  rm -rf "$VENV"
  uv venv --quiet --python python3 "$VENV" >&2
  if ! uv pip install --quiet --python "$VENV/bin/python" schemathesis >&2; then
    rm -rf "$VENV"
    log "uv could not install schemathesis (is PyPI reachable?)"
    exit 1
  fi
fi
echo "$VENV/bin/st"
