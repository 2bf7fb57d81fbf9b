#!/usr/bin/env bash
# End-to-end run latency and throughput: AntCode (embedded `up`) against Celery on the machine's
# Redis, same number of worker processes, same machine, same run. Prints a table and writes the
# results to ops/bench/results/<date>-runs.json (--json-out PATH to put them elsewhere).
#
#   ./ops/bench/run.sh [--slots 2] [--latency-n 50] [--throughput-n 2000]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v uv >/dev/null || python3 -m pip install --quiet uv
VENV=target/bench/celery-venv
if [ ! -x "$VENV/bin/celery" ]; then
  uv venv --quiet "$VENV"
  uv pip install --quiet --python "$VENV/bin/python" celery redis packaging
fi
cargo build --release --quiet -p antcode-bench
exec "${CARGO_TARGET_DIR:-target}/release/bench-runs" --celery-venv "$VENV" "$@"
