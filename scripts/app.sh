#!/usr/bin/env bash
# Run hubscope. With no arguments: build the browser app and the binary, then serve the app
# next to a Hub-compatible API over the reference models and the local HF cache — open the
# printed address (e.g. http://127.0.0.1:8080/?model=fixtures/tiny-qwen2&tab=structure).
# With arguments: run the command line, e.g.
#   scripts/app.sh inspect Qwen/Qwen2.5-0.5B-Instruct      (HF_ENDPOINT=https://hf-mirror.com works)
#   scripts/app.sh generate DIR --chat --prompt "你好"
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
cargo build --locked --release -p hubscope
bin="$CARGO_TARGET_DIR/release/hubscope"
if [ $# -gt 0 ]; then
  exec "$bin" "$@"
fi
bash scripts/build-web.sh
models=()
[ -d ../shared/fixtures ] && models=(--models "fixtures=../shared/fixtures")
port="${PORT:-8080}"
echo "open http://127.0.0.1:$port/?model=fixtures/tiny-qwen2&endpoint=http%3A%2F%2F127.0.0.1%3A$port&tab=generate"
echo "fine-tune: http://127.0.0.1:$port/?model=fixtures/tiny-qwen2&endpoint=http%3A%2F%2F127.0.0.1%3A$port&tab=finetune&ft_init=fixtures/lora-tiny-qwen2&ft_init_sub=adapter_init&ft_lr=0.001&ft_epochs=2 (upload ../shared/fixtures/lora-tiny-qwen2/data.jsonl)"
exec "$bin" serve "${models[@]}" --hf-cache --web dist --port "$port"
