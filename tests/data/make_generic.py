"""Tiny random checkpoints of families hubscope does not run (yet), for the header-only view:
made with transformers 4.57.6 (`AutoModelForCausalLM.from_config`, torch's default init,
float32, seeded) and saved with `save_pretrained` (safetensors), each beside `count.json` with
transformers' own `sum(p.numel() for p in model.parameters())` (tied weights once) and the
names of the tensors in its model.safetensors (tied ones are not saved), and how many values
of them are buffers, not parameters; print_model.txt, what print(model) prints; lora.json,
PEFT's trainable parameters of LoRA r=8 on "all-linear"; kv.json, what transformers' own
cache holds after a forward over 24 and 40 tokens.

    make_generic.py OUT_DIR
"""

import copy
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from peft import LoraConfig, get_peft_model
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
    # Hybrids: Gated DeltaNet layers with one full-attention layer in four; Mamba and attention.
    "qwen3_next": dict(head_dim=16, num_hidden_layers=4, num_experts=4, num_experts_per_tok=2,
                       moe_intermediate_size=32, shared_expert_intermediate_size=32,
                       linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16,
                       linear_value_head_dim=16, linear_conv_kernel_dim=4),
    "jamba": dict(num_hidden_layers=4, attn_layer_period=2, attn_layer_offset=1,
                  expert_layer_period=2, expert_layer_offset=1, num_experts=4,
                  num_experts_per_tok=2, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2,
                  mamba_dt_rank=8, use_mamba_kernels=False),
}
# Context lengths at which the KV cache transformers holds is measured (past every window).
KV_TOKENS = (24, 40)


def cache_bytes(obj, seen):
    """Bytes of every tensor reachable from a cache object (each tensor once)."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(cache_bytes(x, seen) for x in obj)
    if isinstance(obj, dict):
        return sum(cache_bytes(x, seen) for x in obj.values())
    if hasattr(obj, "__dict__"):
        return sum(cache_bytes(x, seen) for x in vars(obj).values())
    return 0


def measure_kv(model, family):
    """What transformers' own cache holds after a forward over n tokens, in bytes (f32)."""
    out = {}
    for n in KV_TOKENS:
        kwargs = {}
        if family == "jamba":  # Jamba builds no cache of its own
            from transformers.models.jamba.modeling_jamba import HybridMambaAttentionDynamicCache
            kwargs["past_key_values"] = HybridMambaAttentionDynamicCache(
                model.config, 1, torch.float32, "cpu")
        ids = (torch.arange(n) % model.config.vocab_size).unsqueeze(0)
        with torch.no_grad():
            r = model(ids, use_cache=True, **kwargs)
        out[str(n)] = cache_bytes(r.past_key_values, set())
    return out

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
    # LoRA on every linear layer as PEFT counts it (target_modules="all-linear": every
    # nn.Linear but the output head), rank 8.
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, target_modules="all-linear"))
    (d / "lora.json").write_text(json.dumps(
        {"r": 8, "trainable": lora.get_nb_trainable_parameters()[0]}))
    (d / "kv.json").write_text(json.dumps({"bytes_per_value": 4,
                                           "cache_bytes": measure_kv(model.eval(), family)}))
    print(family, type(model).__name__, total)

# Quantized checkpoints, counted as the parameters they hold (see hubscope's checkpoint.rs).
# transformers' sum(p.numel()) of the model before quantization is the expected total; its
# quantized modules keep GPTQ's packed weights as buffers and FP8's scales as parameters, so
# count.json also says how many scale values the quantized model adds.
import numpy as np  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from transformers import FineGrainedFP8Config  # noqa: E402
from transformers.integrations.finegrained_fp8 import FP8Linear, replace_with_fp8_linear  # noqa: E402


def quantized_base(family, seed, **extra):
    torch.manual_seed(seed)
    config = AutoConfig.for_model(family, **{**COMMON, **extra})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    linears = {n: m for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and n != "lm_head"}
    return model, linears, sum(p.numel() for p in model.parameters())


def write_count(d, model_type, cls, total, scales, saved):
    d.joinpath("count.json").write_text(json.dumps({
        "model_type": model_type, "class": cls, "parameters": total, "buffers": 0,
        "quant_scales": scales, "saved": sorted(saved), "tied": []}, indent=1))


# Block FP8 as Qwen3-FP8 and DeepSeek-V3 ship it: transformers' own FP8Linear modules
# (replace_with_fp8_linear; float8_e4m3fn weights, one f32 `weight_scale_inv` per 32 x 32
# block, here scale = block amax / 448), saved by save_pretrained.
fp8, linears, total = quantized_base("qwen3", 100, head_dim=16)
dense = {n: m.weight.detach().clone() for n, m in linears.items()}
block = 32
qc = FineGrainedFP8Config(weight_block_size=[block, block])
replace_with_fp8_linear(fp8, quantization_config=qc)
for n, m in fp8.named_modules():
    if isinstance(m, FP8Linear):
        w = dense[n]
        o, i = w.shape
        blocks = w.reshape(o // block, block, i // block, block)
        scale = (blocks.abs().amax(dim=(1, 3)) / 448.0).clamp(min=1e-12)
        q = (blocks / scale[:, None, :, None]).reshape(o, i).to(torch.float8_e4m3fn)
        m.weight = nn.Parameter(q, requires_grad=False)
        m.weight_scale_inv = nn.Parameter(scale, requires_grad=False)
fp8.config.quantization_config = qc
d = OUT / "qwen3-fp8"
fp8.save_pretrained(d, safe_serialization=True)
with safe_open(str(d / "model.safetensors"), "pt") as f:
    saved = list(f.keys())
after = sum(p.numel() for p in fp8.parameters())
write_count(d, "qwen3", type(fp8).__name__, total, after - total, saved)
print("qwen3-fp8", total, after - total)

# 4-bit GPTQ as AutoGPTQ / GPTQModel write it (checkpoint_format "gptq", symmetric, group 32,
# no act-order): `qweight` I32 [in / 8, out] (8 nibbles along the input), `qzeros` I32
# [groups, out / 8] (zero point - 1, packed along the output), `scales` F16 [groups, out],
# `g_idx` I32 [in], biases F16. Packed here by hand from the transformers model's weights —
# GPTQModel, the packer transformers calls, is a source-only PyPI package that needs a compiler.
gptq, linears, total = quantized_base("qwen2", 101)
group = 32
tensors = {}
for n, p in gptq.state_dict().items():
    owner = n.rsplit(".", 1)[0]
    if owner in linears and n.endswith(".weight"):
        w = p.detach().numpy().astype(np.float64).T  # [in, out]
        i, o = w.shape
        g = w.reshape(i // group, group, o)
        scale = np.maximum(np.abs(g).max(axis=1) / 7.0, 1e-8).astype(np.float16)  # [groups, out]
        q = np.clip(np.round(g / scale[:, None, :].astype(np.float64)) + 8, 0, 15).astype(np.uint32)
        q = q.reshape(i, o)
        packed = np.zeros((i // 8, o), dtype=np.uint32)
        for k in range(8):
            packed |= q[k::8] << np.uint32(4 * k)
        zeros = np.full((i // group, o), 8 - 1, dtype=np.uint32)
        qzeros = np.zeros((i // group, o // 8), dtype=np.uint32)
        for k in range(8):
            qzeros |= zeros[:, k::8] << np.uint32(4 * k)
        tensors[owner + ".qweight"] = torch.from_numpy(np.ascontiguousarray(packed).view(np.int32))
        tensors[owner + ".qzeros"] = torch.from_numpy(np.ascontiguousarray(qzeros).view(np.int32))
        tensors[owner + ".scales"] = torch.from_numpy(np.ascontiguousarray(scale))
        tensors[owner + ".g_idx"] = torch.arange(i, dtype=torch.int32) // group
    elif n != "lm_head.weight" or not gptq.config.tie_word_embeddings:
        tensors[n] = p.detach().to(torch.float16).contiguous()
d = OUT / "qwen2-gptq"
d.mkdir(parents=True, exist_ok=True)
save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
config = gptq.config.to_dict()
config["torch_dtype"] = "float16"
config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": group,
                                 "desc_act": False, "sym": True, "checkpoint_format": "gptq"}
(d / "config.json").write_text(json.dumps(config, indent=2))
scales = sum(t.numel() for k, t in tensors.items() if k.rsplit(".", 1)[1] in ("qzeros", "scales", "g_idx"))
write_count(d, "qwen2", type(gptq).__name__, total, scales, tensors.keys())
print("qwen2-gptq", total, scales)
