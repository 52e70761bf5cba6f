#!/usr/bin/env bash
# Build and run hubscope. With no arguments: look inside a reference model and run it.
#   scripts/app.sh inspect DIR | generate DIR --prompt "..." [--chat] | bench --shape qwen2.5-0.5b
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
cargo build --locked --release -p hubscope
bin="$CARGO_TARGET_DIR/release/hubscope"
if [ $# -gt 0 ]; then
  exec "$bin" "$@"
fi
model="${HUBSCOPE_MODEL:-../shared/fixtures/tiny-qwen2}"
"$bin" inspect "$model"
echo
"$bin" generate "$model" --chat --prompt "What is the capital of France?" --temperature 0 --max-new-tokens 16
