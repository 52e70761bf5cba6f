# Sourced by the benchmark scripts: llama.cpp's `llama-server` on one GGUF file, timed the way
# every hubscope benchmark reads it.
#   llama_run SERVER FILE.gguf THREADS PROMPT_LEN GEN
# prints the load time (until /health answers), prompt and decode tokens/s of a prompt of exactly
# PROMPT_LEN token ids, greedy, no early stop (twice; the second run is reported), and peak RSS.

wait_up() { for _ in $(seq 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done; return 1; }

llama_run() {
  local server=$1 file=$2 threads=$3 P=$4 G=$5 port=18804 t0 pid out ids
  t0=$(date +%s.%N)
  "$server" -m "$file" --port $port -t "$threads" -c 2048 --no-webui >/dev/null 2>&1 &
  pid=$!
  wait_up http://127.0.0.1:$port/health
  echo "load $(echo "$(date +%s.%N) - $t0" | bc) s (until /health answers)"
  ids=$(seq 1000 $((1000 + P - 1)) | paste -sd, -)
  for _ in 1 2; do
    out=$(curl -s http://127.0.0.1:$port/completion -d "{\"prompt\": [$ids], \"n_predict\": $G,
      \"temperature\": 0, \"ignore_eos\": true, \"cache_prompt\": false}")
  done
  echo "$out" | python3 -c "import json,sys; t=json.load(sys.stdin)['timings']; print(json.dumps({k: round(t[k], 2) for k in ('prompt_n','prompt_per_second','predicted_n','predicted_per_second')}))"
  echo "peak RSS $(grep VmHWM /proc/$pid/status | awk '{print $2}') kB"
  kill $pid; wait $pid 2>/dev/null || true
}
