#!/usr/bin/env bash
# Ensures an S3-protocol server (moto's server mode) answers on 127.0.0.1:PORT, for tests and dev.
#
#   ./ops/scripts/s3-server.sh [PORT]     # default 19000; prints the endpoint URL on stdout
#
# Installs moto (PyPI `moto[server]`) into a venv under ~/.cache/antcode the first time, with uv
# if present and python3's venv + pip otherwise, then starts `moto_server` detached from this
# shell and waits until it answers HTTP. If something already answers on the port it is left
# alone. moto keeps objects in memory and accepts any credentials: it is a test server only.
# Safe to call from several processes at once (a lock serialises install and start).
set -euo pipefail

PORT="${1:-${ANTCODE_S3_SERVER_PORT:-19000}}"
CACHE="${ANTCODE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/antcode}"
VENV="$CACHE/moto-venv"
LOG="$CACHE/moto-$PORT.log"
ENDPOINT="http://127.0.0.1:$PORT"

log() { printf '[s3-server] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
# An HTTP answer of any status means a server is there (moto answers GET / with a bucket list).
answers() {
  python3 - "$ENDPOINT" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=2)
except urllib.error.HTTPError:
    pass
sys.exit(0)
PY
}

mkdir -p "$CACHE"
exec 9>"$CACHE/s3-server.lock"
flock -w 300 9 || { log "another s3-server.sh has held $CACHE/s3-server.lock for 5 minutes"; exit 1; }

if answers; then
  echo "$ENDPOINT"
  exit 0
fi

if [ ! -x "$VENV/bin/moto_server" ]; then
  log "installing moto[server] into $VENV"
  rm -rf "$VENV"
  if have uv; then
    uv venv --quiet --python python3 "$VENV" >&2
    uv pip install --quiet --python "$VENV/bin/python" 'moto[server]' >&2
  else
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet 'moto[server]' >&2
  fi
fi

log "starting moto_server on $ENDPOINT (log: $LOG)"
# setsid + nohup: the server must outlive the test process that asked for it.
# fd 9 (the lock) is closed for it, or it would hold the lock for its whole life.
setsid nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 </dev/null 9>&- &

for _ in $(seq 1 120); do
  if answers; then
    echo "$ENDPOINT"
    exit 0
  fi
  sleep 0.25
done
log "moto_server did not answer on $ENDPOINT within 30 s; its log follows"
tail -n 30 "$LOG" >&2 || true
exit 1
