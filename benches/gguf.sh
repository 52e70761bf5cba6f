#!/usr/bin/env bash
# One GGUF file run by `hubscope bench` (f32: linear weights kept in their ggml blocks, integer
# decode kernel; f16: dequantized on load) and by llama.cpp's `llama-server` (its own kernels on
# the stored types), one after the other on one machine: prompt and decode tokens/s, load time
# and peak RSS. docs/BENCHMARKS.md records them.
#   benches/gguf.sh LLAMA_SERVER FILE.gguf [PROMPT_LEN] [GEN]
set -euo pipefail
cd "$(dirname "$0")/.."
llama_server=$1 gguf=$2 P=${3:-128} G=${4:-64}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
hub="$CARGO_TARGET_DIR/release/hubscope"
threads=$(nproc)
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $(basename "$gguf"), $(stat -c %s "$gguf") bytes; prompt $P, decode $G"

for dtype in f32 f16; do
  echo "## hubscope bench --dtype $dtype"
  /usr/bin/time -f "peak RSS %M kB, wall %e s" "$hub" bench "$gguf" --dtype "$dtype" \
    --prompt-len "$P" --gen "$G" --runs 2 --json
done

. benches/llama-server.sh
echo "## llama-server ($threads threads, its kernels on the stored types)"
llama_run "$llama_server" "$gguf" "$threads" "$P" "$G"
