#!/usr/bin/env python3
"""PEFT's LoRA training on the CPU, as the peer of `hubscope finetune` in benches/finetune.sh.
Usage:
  finetune_peft.py MODEL_DIR DATA.jsonl [--checkpointing] [--threads 2] [--rank 8] [--alpha 16]
transformers + peft on torch (f32, eager attention), LoRA on q/k/v/o/gate/up/down, AdamW
(lr 1e-4), batch 1, one optimizer step per example of DATA (chat lines, rendered with the
model's chat template, every token labelled). With --checkpointing,
`gradient_checkpointing_enable()` (non-reentrant, per decoder layer). Prints one JSON line:
steps, tokens, losses, tokens/s over the steps, and the process's peak RSS (ru_maxrss)."""
import argparse
import json
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(
        a.model, torch_dtype=torch.float32, attn_implementation="eager")
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(
        r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            weight_decay=0.0)
    examples = [json.loads(line) for line in open(a.data) if line.strip()]
    ids = [tok.apply_chat_template(e["messages"], tokenize=True) for e in examples]
    losses, tokens = [], 0
    t0 = time.perf_counter()
    for x in ids:
        x = torch.tensor([x])
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
        tokens += x.shape[1]
    secs = time.perf_counter() - t0
    print(json.dumps({
        "peer": "peft", "checkpointing": a.checkpointing, "steps": len(ids), "tokens": tokens,
        "losses": losses, "tokens_per_s": tokens / secs,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
