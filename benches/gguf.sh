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

wait_up() { for _ in $(seq 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done; return 1; }
echo "## llama-server ($threads threads, its kernels on the stored types)"
t0=$(date +%s.%N)
"$llama_server" -m "$gguf" --port 18803 -t "$threads" -c 2048 --no-webui >/dev/null 2>&1 &
pid=$!
wait_up http://127.0.0.1:18803/health
echo "load $(echo "$(date +%s.%N) - $t0" | bc) s (until /health answers)"
# A prompt of exactly P tokens (ids), greedy, no early stop; twice, the second one reported.
ids=$(seq 1000 $((1000 + P - 1)) | paste -sd, -)
for _ in 1 2; do
  out=$(curl -s http://127.0.0.1:18803/completion -d "{\"prompt\": [$ids], \"n_predict\": $G,
    \"temperature\": 0, \"ignore_eos\": true, \"cache_prompt\": false}")
done
echo "$out" | python3 -c "import json,sys; t=json.load(sys.stdin)['timings']; print(json.dumps({k: t[k] for k in ('prompt_n','prompt_per_second','predicted_n','predicted_per_second')}))"
echo "peak RSS $(grep VmHWM /proc/$pid/status | awk '{print $2}') kB"
kill $pid; wait $pid 2>/dev/null || true
