#!/usr/bin/env bash
# LoRA fine-tuning memory and speed of `hubscope finetune` beside PEFT + transformers on torch
# (benches/finetune_peft.py), each with and without gradient checkpointing, and the planner's
# figure, at the given contexts; one machine, one run. Prints JSON lines; docs/BENCHMARKS.md
# records them.
#   benches/finetune.sh MODEL_DIR [CONTEXTS] [STEPS]
# MODEL_DIR: an HF-layout folder with tokenizer (e.g. ../shared/tools/get-qwen-coder.py OUT
# --dtype f32). CONTEXTS: tokens per example, comma-separated (default 512,2048); STEPS:
# examples (optimizer steps) per run (default 2). LoRA r=8, alpha 16 on all seven projections,
# batch 1, f32, CPU, all cores. DTYPES="f32 q4_k" adds hubscope runs on a base quantized as it
# loads (QLoRA; gradient checkpointing only); PEFT=0 leaves out the PEFT runs.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 contexts=${2:-512,2048} steps=${3:-2}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
py=${HUBSCOPE_PYTHON:-$CARGO_TARGET_DIR/pyenv/bin/python}
hub="$CARGO_TARGET_DIR/release/hubscope"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
threads=$(nproc)
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

for ctx in ${contexts//,/ }; do
  # Chat examples of about `ctx` tokens with the model's template (one user turn of repeated
  # words, a short answer): the count is measured with the model's own tokenizer.
  "$py" - "$model" "$ctx" "$steps" > "$work/data.jsonl" <<'EOF'
import json, sys
from transformers import AutoTokenizer
model, ctx, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(model)
def msgs(n):
    return [{"role": "user", "content": " ".join(["word"] * n)},
            {"role": "assistant", "content": "Many words."}]
n = ctx
while len(tok.apply_chat_template(msgs(n), tokenize=True)) > ctx:
    n -= 1
for _ in range(steps):
    print(json.dumps({"messages": msgs(n)}))
EOF
  echo "## context $ctx"
  "$hub" mem "$model" --context "$ctx" --lora-rank 8 --dtype f32 2>/dev/null | grep -E "LoRA|Fine-tuning" || true
  for dtype in ${DTYPES:-f32}; do
    for ck in on off; do
      flag=()
      [ "$ck" = off ] && flag=(--no-gradient-checkpointing)
      [ "$ck" = off ] && [ "$dtype" != f32 ] && [ "$dtype" != f16 ] && [ "$dtype" != bf16 ] && continue
      rm -rf "$work/out"
      # A run the kernel kills for memory is a result too: say so and go on.
      if out=$("$hub" finetune "$model" --data "$work/data.jsonl" --lora-rank 8 --lora-alpha 16 \
        --dtype "$dtype" --out "$work/out" --json "${flag[@]}" 2>/dev/null); then
        echo "$out" | tail -1 | sed "s/^{/{\"peer\":\"hubscope\",\"dtype\":\"$dtype\",\"checkpointing\":\"$ck\",/"
      else
        echo "{\"peer\":\"hubscope\",\"dtype\":\"$dtype\",\"checkpointing\":\"$ck\",\"failed\":\"exit $?\"}"
      fi
    done
  done
  [ "${PEFT:-1}" = 1 ] || continue
  for ck in on off; do
    flag=()
    [ "$ck" = on ] && flag=(--checkpointing)
    "$py" benches/finetune_peft.py "$model" "$work/data.jsonl" --threads "$threads" "${flag[@]}" \
      2>/dev/null || echo "{\"peer\":\"peft\",\"checkpointing\":\"$ck\",\"failed\":\"exit $?\"}"
  done
done
