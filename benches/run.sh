#!/usr/bin/env bash
# hubscope vs candle-transformers on CPU, same models, prompt and token counts, one machine,
# one run. Prints JSON lines; docs/BENCHMARKS.md records them.
#   benches/run.sh [PROMPT_LEN] [GEN] [RUNS]
# HUBSCOPE_BEFORE=/path/to/older/hubscope adds that binary's runs beside each pair (before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${1:-128} G=${2:-128} R=${3:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
work=${BENCH_DIR:-/tmp/hubscope-bench}
mkdir -p "$work"
[ -x "$work/venv/bin/python" ] || { python3 -m venv "$work/venv"; "$work/venv/bin/pip" install -q numpy safetensors gguf; }
py="$work/venv/bin/python"
[ -f "$work/smollm2-f32/model.safetensors" ] || "$py" ../shared/tools/get-smollm2.py "$work/smollm2-f32" --dtype f32 >/dev/null
[ -f "$work/qwen05-f32/model.safetensors" ] || "$py" benches/make_shape.py qwen2.5-0.5b "$work/qwen05-f32" >/dev/null
[ -f "$work/qwen3moe-f32/model.safetensors" ] || "$py" benches/make_shape.py qwen3-moe-1b "$work/qwen3moe-f32" >/dev/null
cargo build --locked --release -p hubscope
(cd benches/candle-peer && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/candle" cargo build --release)
hub="$CARGO_TARGET_DIR/release/hubscope"
peer="$CARGO_TARGET_DIR/candle/release/candle-peer"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for model in smollm2-f32 qwen05-f32 qwen3moe-f32; do
  for dtype in f32 f16; do
    echo "## $model $dtype"
    if [ -n "${HUBSCOPE_BEFORE:-}" ]; then
      echo "# before: $HUBSCOPE_BEFORE"
      "$HUBSCOPE_BEFORE" bench "$work/$model" --dtype "$dtype" --prompt-len "$P" --gen "$G" --runs "$R" --json
    fi
    "$hub" bench "$work/$model" --dtype "$dtype" --prompt-len "$P" --gen "$G" --runs "$R" --json
    "$peer" "$work/$model" --dtype "$dtype" --prompt-len "$P" --gen "$G" --runs "$R"
  done
done
