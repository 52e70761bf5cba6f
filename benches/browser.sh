#!/usr/bin/env bash
# hubscope's Generate tab beside wllama (llama.cpp in WebAssembly, npm @wllama/wllama) in one
# headless Chromium, one after the other, on the same model folder served by `hubscope serve`:
# first token, prompt and decode tokens/s, the page's answer time and the renderer's peak
# memory (benches/browser.py). Both on the CPU, one thread. docs/BENCHMARKS.md records them.
#   benches/browser.sh MODEL_DIR [HF_FILE_OR_GGUF ...]  (files of MODEL_DIR: *.gguf runs in both,
#   model.safetensors in hubscope's tab only) with PROMPT, GEN, RUNS, DTYPE (hubscope: auto) and
#   HUBSCOPE_WEB (a dist/ to compare, default ./dist) in the environment
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(realpath "$1"); shift
PROMPT=${PROMPT:-"The capital of France is"} GEN=${GEN:-64} RUNS=${RUNS:-2} DTYPE=${DTYPE:-auto}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
hub="${HUBSCOPE_BIN:-$CARGO_TARGET_DIR/release/hubscope}"
web=$(realpath "${HUBSCOPE_WEB:-dist}")
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
# The page, hubscope's app and wllama's package side by side under one origin.
cp -r "$web" "$work/site"
cp benches/wllama/index.html "$work/site/wllama.html"
(cd "$work" && npm pack --silent @wllama/wllama@3.13.0 >/dev/null && tar xzf wllama-wllama-3.13.0.tgz &&
  mv package "$work/site/wllama")
mkdir -p "$work/models"
ln -s "$model_dir" "$work/models/m"
port=$((20000 + RANDOM % 20000))
"$hub" serve --models "b=$work/models" --web "$work/site" --port "$port" >"$work/serve.log" 2>&1 &
url="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$url/" >/dev/null && break; sleep 0.2; done
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(chromium --version)"
echo "# $(basename "$model_dir"); prompt \"$PROMPT\", $GEN new tokens, greedy, $RUNS runs (run 1 downloads, later ones read the browser's cache)"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(model.safetensors)
for f in "${files[@]}"; do
  file_key=""
  [[ "$f" == *.gguf ]] && file_key="&file=$(enc "$f")"
  echo "## hubscope tab: $f (dtype $DTYPE, CPU)"
  python3 benches/browser.py --runs "$RUNS" \
    "$url/?model=b/m$file_key&endpoint=$(enc "$url")&tab=generate&prompt=$(enc "$PROMPT")&temperature=0&max_new_tokens=$GEN&device=cpu&dtype=$DTYPE&autorun=1"
  if [[ "$f" == *.gguf ]]; then
    echo "## wllama 3.13.0: $f (1 thread, CPU)"
    python3 benches/browser.py --runs "$RUNS" \
      "$url/wllama.html?model=$(enc "$url/b/m/resolve/main/$f")&prompt=$(enc "$PROMPT")&max_new_tokens=$GEN&threads=1&gpu_layers=0"
  fi
done
