#!/usr/bin/env bash
# GPU side-by-side check for an NVIDIA machine (issue 6), to run there in one call (< 8 min):
#   1. make a Qwen2.5-0.5B-shaped random-weight model with transformers (bf16, saved as safetensors),
#   2. time transformers' greedy generate on the GPU (bf16, batch 1, prompt 128, 128 new tokens),
#   3. run `hubscope bench` on the same weights on the GPU,
#   4. check logits agreement in f32 on one prompt (transformers vs `hubscope generate --logprobs`).
# Needs: a hubscope binary built here and carried (HUBSCOPE_BIN, default dist-gpu/hubscope; made by
# scripts/gpu-pack.sh as dist-gpu/hubscope.xz, about 13 MB, unpacked here), and python3 with
# torch + transformers on the GPU machine. Results go to $OUT (or ./gpu-check-out).
#   scripts/gpu-check.sh            run everything
#   scripts/gpu-check.sh --dry-run  the whole pipeline on the CPU of a machine without a GPU
#                                   (torch on cpu, hubscope --device cpu, a 2-layer model, 16 tokens)
# DEVICE=cuda (the default build holds CUDA: NVRTC and the driver loaded at run time);
# DEVICE=wgpu uses Vulkan on the NVIDIA driver.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${1:-}" = "--dry-run" ]; then
  export TORCH_DEVICE=cpu LAYERS=2 GEN=16 RUNS=1
  DEVICE=cpu DTYPE=f32 WORK=${WORK:-/tmp/hubscope-gpu-dry} OUT=${OUT:-gpu-check-dry}
  BIN=${HUBSCOPE_BIN:-${CARGO_TARGET_DIR:-target}/release/hubscope}
fi
BIN=${HUBSCOPE_BIN:-${BIN:-dist-gpu/hubscope}}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
OUTDIR=${OUT:-gpu-check-out}
WORK=${WORK:-/tmp/hubscope-gpu}
export TORCH_DEVICE=${TORCH_DEVICE:-cuda} LAYERS=${LAYERS:-24} GEN=${GEN:-128} RUNS=${RUNS:-3}
mkdir -p "$OUTDIR" "$WORK"
if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then xz -dkc "$BIN.xz" > "$BIN" && chmod +x "$BIN"; fi
[ -x "$BIN" ] || { echo "no hubscope binary at $BIN (set HUBSCOPE_BIN)"; exit 1; }
"$BIN" --version
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUTDIR/gpu.txt"
fi
cat > "$WORK/peer.py" <<'PY2'
import json, os, sys, time
import torch
from transformers import AutoConfig, AutoModelForCausalLM
work, out = sys.argv[1], sys.argv[2]
dev, layers, gen, runs = os.environ["TORCH_DEVICE"], int(os.environ["LAYERS"]), int(os.environ["GEN"]), int(os.environ["RUNS"])
cfg = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=151936, hidden_size=896,
    intermediate_size=4864, num_hidden_layers=layers, num_attention_heads=14, num_key_value_heads=2,
    max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True,
    torch_dtype="bfloat16", bos_token_id=151643, eos_token_id=151645)
path = os.path.join(work, f"qwen05-shape-{layers}l")
if not os.path.exists(os.path.join(path, "model.safetensors")):
    torch.manual_seed(0)
    config = AutoConfig.for_model(**cfg)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16).to(dev).eval()
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
vocab = cfg["vocab_size"]
prompt = [((i * 2654435761 + 1000) % (vocab - 1000)) + 100 for i in range(128)]  # = hubscope bench
ids = torch.tensor([prompt], device=dev)
res = {}
with torch.no_grad():
    model.generate(ids, max_new_tokens=8, do_sample=False)  # warm-up
    times = []
    for _ in range(runs):
        sync(); t = time.time()
        model.generate(ids, max_new_tokens=gen, min_new_tokens=gen, do_sample=False)
        sync(); times.append(time.time() - t)
    median = sorted(times)[len(times) // 2]
    res.update(device=dev, layers=layers, new_tokens=gen, transformers_bf16_s=median)
    # prompt + generation, like `hubscope bench`'s end-to-end figure; decode tok/s below.
    res["transformers_decode_tok_s"] = gen / median
    # f32 logits of the last prompt position, for the agreement check.
    m32 = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).to(dev).eval()
    logits = m32(ids).logits[0, -1].float()
    lp = torch.log_softmax(logits, -1)
    top = torch.topk(lp, 5)
    res["f32_top5"] = [[int(i), float(v)] for v, i in zip(top.values, top.indices)]
json.dump(res, open(os.path.join(out, "transformers.json"), "w"), indent=1)
print(json.dumps(res))
PY2
"$PY" "$WORK/peer.py" "$WORK" "$OUTDIR"
MODEL="$WORK/qwen05-shape-${LAYERS}l"
"$BIN" bench "$MODEL" --device "$DEVICE" --dtype "$DTYPE" --prompt-len 128 --gen "$GEN" --runs "$RUNS" --json | tee "$OUTDIR/hubscope-bench.json"
ids=$("$PY" -c "print(','.join(str(((i*2654435761+1000)%(151936-1000))+100) for i in range(128)))")
"$BIN" generate "$MODEL" --prompt-ids "$ids" --max-new-tokens 1 --temperature 0 --logprobs 5 \
  --dtype f32 --device "$DEVICE" --json > "$OUTDIR/hubscope-logprobs.json"
"$PY" - "$OUTDIR" <<'PY'
import json, sys
out = sys.argv[1]
ref = json.load(open(f"{out}/transformers.json"))
hub = json.load(open(f"{out}/hubscope-logprobs.json"))["logprobs"][0]
bench = json.load(open(f"{out}/hubscope-bench.json"))
worst = max(abs(h["logprob"] - r[1]) for h, r in zip(hub, ref["f32_top5"]))
same_ids = [h["id"] for h in hub] == [r[0] for r in ref["f32_top5"]]
ratio = bench["decode_tok_s"]["median"] / ref["transformers_decode_tok_s"]
summary = {"f32_top5_same_ids": same_ids, "f32_top5_max_abs_logprob_diff": worst,
           "hubscope_decode_tok_s": bench["decode_tok_s"]["median"],
           "transformers_decode_tok_s": ref["transformers_decode_tok_s"], "ratio": ratio}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary))
sys.exit(0 if same_ids and worst < 1e-3 else 1)
PY
