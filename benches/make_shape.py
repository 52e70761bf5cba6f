#!/usr/bin/env python3
"""Write a random-weight model of a published shape in Hugging Face layout, so that hubscope
and its peers run the very same weights. Usage: make_shape.py qwen2.5-0.5b OUT_DIR [--dtype f32|f16]
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
}

def main():
    shape, out = sys.argv[1], sys.argv[2]
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "f32"
    c = SHAPES[shape]
    h, i, hd = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    rng = np.random.default_rng(0)
    npd = {"f32": np.float32, "f16": np.float16}[dtype]
    w = lambda *s: (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(npd)
    norm = lambda n: (1 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(npd)
    t = {"model.embed_tokens.weight": w(c["vocab_size"], h), "model.norm.weight": norm(h)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}"
        t |= {f"{p}.self_attn.q_proj.weight": w(q, h), f"{p}.self_attn.q_proj.bias": w(q),
              f"{p}.self_attn.k_proj.weight": w(kv, h), f"{p}.self_attn.k_proj.bias": w(kv),
              f"{p}.self_attn.v_proj.weight": w(kv, h), f"{p}.self_attn.v_proj.bias": w(kv),
              f"{p}.self_attn.o_proj.weight": w(h, q), f"{p}.mlp.gate_proj.weight": w(i, h),
              f"{p}.mlp.up_proj.weight": w(i, h), f"{p}.mlp.down_proj.weight": w(h, i),
              f"{p}.input_layernorm.weight": norm(h), f"{p}.post_attention_layernorm.weight": norm(h)}
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    c = dict(c, torch_dtype={"f32": "float32", "f16": "float16"}[dtype])
    json.dump(c, open(os.path.join(out, "config.json"), "w"), indent=2)
    print(out)

main()
