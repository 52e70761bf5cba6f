#!/usr/bin/env bash
# Aggregate decode throughput of `hubscope serve --chat` beside llama.cpp's `llama-server
# --parallel` on the same weights, at 1, 4 and 16 concurrent streaming clients (the official
# openai client, benches/serve_load.py), one machine, one run. Prints JSON lines and each
# server's peak RSS; docs/BENCHMARKS.md records them.
#   benches/serve.sh LLAMA_SERVER GGUF [GEN] [CLIENTS]
# GGUF: the same weights as $BENCH_DIR/qwen05-f32 (the Qwen2.5-0.5B shape of make_shape.py),
# converted with llama.cpp's convert_hf_to_gguf.py --outtype f32.
set -euo pipefail
cd "$(dirname "$0")/.."
llama_server=$1 gguf=$2 G=${3:-32} C=${4:-1,4,16}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
work=${BENCH_DIR:-/tmp/hubscope-bench}
py=${HUBSCOPE_PYTHON:-$CARGO_TARGET_DIR/pyenv/bin/python}
hub="$CARGO_TARGET_DIR/release/hubscope"
max=${C##*,}
threads=$(nproc)
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

. benches/llama-server.sh  # wait_up
peak() { grep VmHWM "/proc/$1/status" | awk '{print $2 " kB"}'; }

echo "## hubscope serve --chat (f32, cpu, --max-batch $max)"
"$hub" serve --port 18801 --chat "qwen05=$work/qwen05-f32" --max-batch "$max" >/dev/null 2>&1 &
pid=$!
wait_up http://127.0.0.1:18801/v1/models
"$py" benches/serve_load.py http://127.0.0.1:18801/v1 qwen05 --clients "$C" --gen "$G"
echo "peak RSS $(peak $pid)"
curl -s http://127.0.0.1:18801/metrics | grep -v '^#'
kill $pid; wait $pid 2>/dev/null || true

echo "## llama-server --parallel $max (f32 GGUF, $threads threads)"
"$llama_server" -m "$gguf" --port 18802 -t "$threads" --parallel "$max" -c $((max * 1024)) \
  --no-webui >/dev/null 2>&1 &
pid=$!
wait_up http://127.0.0.1:18802/v1/models
"$py" benches/serve_load.py http://127.0.0.1:18802/v1 qwen05 --clients "$C" --gen "$G"
echo "peak RSS $(peak $pid)"
kill $pid; wait $pid 2>/dev/null || true
