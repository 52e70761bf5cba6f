#!/usr/bin/env bash
# Quantized weights, hubscope beside llama.cpp, one after the other on one idle machine, from one
# Hugging Face f32 folder (../shared/tools/get-qwen-coder.py or get-smollm2.py):
#  1. the GGUF files llama.cpp makes: `convert_hf_to_gguf.py` (F32, F16, Q8_0) and
#     `llama-quantize` (Q4_0, Q4_K_S from the F32 file), and the ones `hubscope export --format
#     gguf` makes (q8_0, q4_0, q4_k): which tensors are byte-identical (gguf-py reads both);
#  2. each file run by `hubscope bench` and by `llama-server` (2 threads by default): load time,
#     prompt and decode tokens/s, peak RSS; and `hubscope bench FOLDER --dtype q4_k|q4_0|q8_0`
#     (quantized as it loads);
#  3. llama.cpp's loader on hubscope's files (`llama-server` answers a greedy completion), and
#     perplexity of each quantization by `hubscope perplexity` (benches/perplexity-text.txt).
# docs/BENCHMARKS.md records the results.
#   benches/quantize.sh LLAMA_CPP_DIR (sources, built in build/) HF_FOLDER [PROMPT_LEN] [GEN]
# WORK=DIR keeps the GGUF files there (made only where missing) instead of a temporary folder;
# PERPLEXITY=0 leaves out step 3's perplexities.
set -euo pipefail
cd "$(dirname "$0")/.."
llama=$1 folder=$2 P=${3:-128} G=${4:-64}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
python="${HUBSCOPE_PYTHON:-$CARGO_TARGET_DIR/pyenv/bin/python}"
hub="$CARGO_TARGET_DIR/release/hubscope"
bin="$llama/build/bin"
threads=${THREADS:-$(nproc)}
if [ -n "${WORK:-}" ]; then
  work=$WORK
  mkdir -p "$work"
else
  work=$(mktemp -d /tmp/hubscope-quant.XXXX)
  trap 'rm -rf "$work"' EXIT
fi
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $folder; prompt $P, decode $G"

echo "## files"
for t in f32 f16 q8_0; do
  [ -f "$work/llama-$t.gguf" ] ||
    "$python" "$llama/convert_hf_to_gguf.py" "$folder" --outtype "$t" --outfile "$work/llama-$t.gguf" >/dev/null 2>&1
done
for t in Q4_0 Q4_K_S Q4_K_M; do
  [ -f "$work/llama-${t,,}.gguf" ] ||
    "$bin/llama-quantize" "$work/llama-f32.gguf" "$work/llama-${t,,}.gguf" "$t" >/dev/null 2>&1
done
for t in q8_0 q4_0 q4_k; do
  [ -f "$work/hubscope-$t.gguf" ] || /usr/bin/time -f "hubscope export $t: wall %e s, peak RSS %M kB" \
    "$hub" export "$folder" --format gguf --dtype "$t" --out "$work/hubscope-$t.gguf" >/dev/null
done
ls -l "$work" | awk 'NR>1 {print $5, $9}'

echo "## tensors: hubscope's file vs llama.cpp's (gguf-py reads both)"
for pair in q8_0:q8_0 q4_0:q4_0 q4_k:q4_k_s; do
  "$python" - "$work/hubscope-${pair%%:*}.gguf" "$work/llama-${pair##*:}.gguf" <<'EOF'
import json, subprocess, sys
read = lambda f: json.loads(subprocess.check_output([sys.executable, "tests/data/gguf_export_check.py", "read", f]))
a, b = read(sys.argv[1]), read(sys.argv[2])
same = [n for n in a["tensors"] if a["tensors"][n] == b["tensors"].get(n)]
differ = sorted({f"{n.split('.')[-2] if n.startswith('blk') else n}: {a['tensors'][n][1]} vs {b['tensors'].get(n, [0, 'absent'])[1]}" for n in a["tensors"] if n not in same})
print(f"{sys.argv[1].split('/')[-1]} vs {sys.argv[2].split('/')[-1]}: {len(same)} of {len(a['tensors'])} tensors byte-identical; differing: {differ}")
EOF
done

. benches/llama-server.sh
hub_run() {
  "$hub" bench "$@" --prompt-len "$P" --gen "$G" --runs 2 --json | python3 -c "
import json, sys
j = json.load(sys.stdin)
print(json.dumps({'load_s': round(j['load_s'], 2), 'prefill': j['prefill_tok_s'], 'decode': j['decode_tok_s'],
                  'peak RSS kB': j['peak_rss_bytes'] // 1024}))"
}

echo "## speed and memory"
for t in f32 f16 q8_0 q4_0 q4_k_s q4_k_m; do
  echo "### $t: llama-server"
  llama_run "$bin/llama-server" "$work/llama-$t.gguf" "$threads" "$P" "$G"
  echo "### $t: hubscope bench (same file)"
  case $t in f16) d=f16 ;; *) d=f32 ;; esac
  hub_run "$work/llama-$t.gguf" --dtype "$d"
done
for t in q8_0 q4_0 q4_k; do
  echo "### $t: hubscope bench FOLDER --dtype $t (quantized on load)"
  hub_run "$folder" --dtype "$t"
done

echo "## llama.cpp loads hubscope's files"
for t in q8_0 q4_0 q4_k; do
  "$bin/llama-server" -m "$work/hubscope-$t.gguf" --port 18805 -t "$threads" -c 512 --no-webui >/dev/null 2>&1 &
  pid=$!
  wait_up http://127.0.0.1:18805/health
  echo "hubscope-$t.gguf: $(curl -s http://127.0.0.1:18805/completion -d '{"prompt": "The capital of France is", "n_predict": 12, "temperature": 0}' |
    python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['content']))")"
  kill $pid; wait $pid 2>/dev/null || true
done

[ "${PERPLEXITY:-1}" = 1 ] || exit 0
echo "## perplexity (hubscope perplexity, benches/perplexity-text.txt)"
text=benches/perplexity-text.txt
echo "f32 folder: $("$hub" perplexity "$folder" --text "$text" --max-tokens 256 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['perplexity'])")"
for f in hubscope-q8_0 llama-q8_0 hubscope-q4_0 llama-q4_0 hubscope-q4_k llama-q4_k_s; do
  echo "$f: $("$hub" perplexity "$work/$f.gguf" --text "$text" --max-tokens 256 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['perplexity'])")"
done
