#!/usr/bin/env bash
# Refreshes the README's screenshots of the web UI from the browser tests: runs them (they write
# every page to $CARGO_TARGET_DIR/ui-screenshots, English, Simplified Chinese and dark), then
# copies the ones the README shows to docs/ui/.
#
#   ./ops/scripts/ui-screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
shots="$target/ui-screenshots"
# Pictures of an earlier run may carry other numbers: start from none.
rm -rf "$shots"
cargo test -p antcode-control --test ui_browser
mkdir -p docs/ui
copy() {
  # The Chinese walk numbers its pages; the name after the number is stable.
  local src
  src="$(ls "$shots"/$1.png 2>/dev/null | head -n1)"
  [ -n "$src" ] || { echo "ui-screenshots: no screenshot $1 in $shots" >&2; exit 1; }
  cp "$src" "docs/ui/$2.png"
}
copy 11-dashboard dashboard.en
copy 'zh-[0-9][0-9]-dashboard' dashboard.zh-CN
copy 10-run-succeeded run.en
copy 'zh-[0-9][0-9]-run' run.zh-CN
copy 11b-task-analysis task-analysis.en
copy 'zh-[0-9][0-9]-task' task-analysis.zh-CN
copy 03e-project-compare project-compare.en
copy 'zh-[0-9][0-9]-project-compare' project-compare.zh-CN
copy 't[0-9][0-9]-dark-dashboard' dashboard.dark
echo "docs/ui: $(ls docs/ui | tr '\n' ' ')"
