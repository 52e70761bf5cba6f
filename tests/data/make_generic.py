"""Tiny random checkpoints of families hubscope does not run (yet), for the header-only view:
made with transformers 4.57.6 (`AutoModelForCausalLM.from_config`, torch's default init,
float32, seeded) and saved with `save_pretrained` (safetensors), each beside `count.json` with
transformers' own `sum(p.numel() for p in model.parameters())` (tied weights once) and the
names of the tensors in its model.safetensors (tied ones are not saved), and how many values
of them are buffers, not parameters; and print_model.txt, what print(model) prints.

    make_generic.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

OUT = Path(sys.argv[1])
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
FAMILIES = {
    "gemma2": dict(head_dim=16, sliding_window=16),
    "gemma3_text": dict(head_dim=16, sliding_window=16),
    "phi3": dict(pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "mistral": dict(sliding_window=16),
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=64),
    "qwen3_moe": dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    "deepseek_v3": dict(n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
                        moe_intermediate_size=32, first_k_dense_replace=1, n_group=1,
                        topk_group=1, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8,
                        qk_nope_head_dim=8, v_head_dim=16),
    "olmo2": dict(),
}

for i, (family, extra) in enumerate(FAMILIES.items()):
    torch.manual_seed(i)
    config = AutoConfig.for_model(family, **{**COMMON, **extra})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    d = OUT / family
    model.save_pretrained(d, safe_serialization=True)
    total = sum(p.numel() for p in model.parameters())
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        saved = sorted(f.keys())
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    buffers = sum(b.numel() for n, b in model.state_dict().items() if n not in params)
    (d / "count.json").write_text(json.dumps({
        "model_type": family, "class": type(model).__name__, "parameters": total,
        "buffers": buffers, "saved": saved,
        "tied": sorted(set(model.state_dict()) - set(saved))}, indent=1))
    (d / "print_model.txt").write_text(str(model) + "\n")
    print(family, type(model).__name__, total)
