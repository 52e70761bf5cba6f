#!/usr/bin/env python3
"""Write a random-weight model of a published shape in Hugging Face layout, so that hubscope
and its peers run the very same weights. Usage: make_shape.py SHAPE OUT_DIR [--dtype f32|f16]
SHAPE: qwen2.5-0.5b, or qwen3-moe-1b (Qwen3-30B-A3B's layer design — head_dim 128 with q/k
norms, 8 of its experts per token, untied head — at 1/2 the width, 1/2 the experts of 1/3 the
width and 1/3 the depth: 1.19B parameters, 0.35B active per token).
Needs numpy and safetensors (benches/run.sh makes a venv with them)."""
import json, os, sys
import numpy as np
from safetensors.numpy import save_file

SHAPES = {
    "qwen2.5-0.5b": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "hidden_act": "silu", "sliding_window": 32768, "max_window_layers": 24,
        "use_sliding_window": False, "bos_token_id": 151643, "eos_token_id": 151645,
    },
    "qwen3-moe-1b": {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 151936,
        "hidden_size": 1024, "intermediate_size": 3072, "moe_intermediate_size": 256,
        "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 4,
        "head_dim": 128, "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": True,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "max_position_embeddings": 40960,
        "max_window_layers": 16, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False,
        "sliding_window": None, "use_sliding_window": False, "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
}

def main():
    shape, out = sys.argv[1], sys.argv[2]
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "f32"
    c = SHAPES[shape]
    h, i = c["hidden_size"], c["intermediate_size"]
    hd = c.get("head_dim", h // c["num_attention_heads"])
    moe = c["model_type"] == "qwen3_moe"
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    rng = np.random.default_rng(0)
    npd = {"f32": np.float32, "f16": np.float16}[dtype]
    w = lambda *s: (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(npd)
    norm = lambda n: (1 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(npd)
    t = {"model.embed_tokens.weight": w(c["vocab_size"], h), "model.norm.weight": norm(h)}
    if not c["tie_word_embeddings"]:
        t["lm_head.weight"] = w(c["vocab_size"], h)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        t |= {f"{p}.self_attn.q_proj.weight": w(q, h), f"{p}.self_attn.k_proj.weight": w(kv, h),
              f"{p}.self_attn.v_proj.weight": w(kv, h), f"{p}.self_attn.o_proj.weight": w(h, q),
              f"{p}.input_layernorm.weight": norm(h), f"{p}.post_attention_layernorm.weight": norm(h)}
        if moe:
            m = c["moe_intermediate_size"]
            t |= {f"{p}.self_attn.q_norm.weight": norm(hd), f"{p}.self_attn.k_norm.weight": norm(hd),
                  f"{p}.mlp.gate.weight": w(c["num_experts"], h)}
            for e in range(c["num_experts"]):
                x = f"{p}.mlp.experts.{e}"
                t |= {f"{x}.gate_proj.weight": w(m, h), f"{x}.up_proj.weight": w(m, h),
                      f"{x}.down_proj.weight": w(h, m)}
        else:
            t |= {f"{p}.self_attn.q_proj.bias": w(q), f"{p}.self_attn.k_proj.bias": w(kv),
                  f"{p}.self_attn.v_proj.bias": w(kv), f"{p}.mlp.gate_proj.weight": w(i, h),
                  f"{p}.mlp.up_proj.weight": w(i, h), f"{p}.mlp.down_proj.weight": w(h, i)}
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    c = dict(c, torch_dtype={"f32": "float32", "f16": "float16"}[dtype])
    json.dump(c, open(os.path.join(out, "config.json"), "w"), indent=2)
    print(out)

main()
