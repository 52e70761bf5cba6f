"""GGUF models and dequantization references, made by llama.cpp's converter, gguf-py and
transformers 4.57.6 (the test venv's versions).

    make_gguf_models.py OUT_DIR LLAMA_CPP_DIR SHARED_FIXTURES

- OUT_DIR/dequant/blocks.gguf: one tensor per ggml type hubscope reads (F32, F16, BF16, Q8_0,
  Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), shape (6, 512), written by gguf-py's
  GGUFWriter from random block bytes (each block's f16 scales set to finite random halves), and
  OUT_DIR/dequant/expected.safetensors: the same tensors as `gguf.quants.dequantize` gives them
  (f32), the values hubscope must reproduce bit for bit.
- OUT_DIR/<fixture>-<type>/model.gguf: tiny-qwen2 and tiny-llama of ../shared/fixtures converted by
  llama.cpp's own `convert_hf_to_gguf.py` (from the PyPI llama-cpp-python 0.3.36 sdist), in Q8_0
  and F16 (qwen2) and Q8_0 and F32 (llama: its q/k rows permuted, as llama.cpp stores them).
  Beside each, reference.json and reference.safetensors: per prompt of the fixture's
  reference.json, the ids of the fixture's own tokenizer (the tokenizer the GGUF was made from),
  the ids transformers' GGUF tokenizer conversion gives the text, and transformers'
  `from_pretrained(..., gguf_file=...)` (f32, eager) on the fixture's ids: last-position logits
  (all of them, `prompt{i}.last_logits`) and 8 greedy tokens.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize
from safetensors.numpy import save_file as save_np
from safetensors.torch import save_file as save_torch
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = Path(sys.argv[1])
LLAMA_CPP = Path(sys.argv[2])
FIXTURES = Path(sys.argv[3])
rng = np.random.default_rng(7)

# Byte offsets of each block's f16 fields (scales, mins), from ggml's block structs.
HALVES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def dequant_fixture():
    out = OUT / "dequant"
    out.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(out / "blocks.gguf"), "llama")
    expected = {}
    rows, cols = 6, 512
    for t in [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1,
              T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        name = f"t.{t.name}"
        block, size = GGML_QUANT_SIZES[t]
        n = rows * cols // block
        if t == T.F32:
            raw = rng.standard_normal(rows * cols).astype(np.float32).view(np.uint8)
        elif t == T.F16:
            raw = rng.standard_normal(rows * cols).astype(np.float16).view(np.uint8)
        elif t == T.BF16:
            raw = (rng.standard_normal(rows * cols).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        else:
            raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
            for at in HALVES[t]:
                h = (rng.standard_normal(n) * 0.05).astype(np.float16).view(np.uint8).reshape(n, 2)
                raw[:, at:at + 2] = h
        raw = raw.reshape(rows, cols // block * size)
        w.add_tensor(name, raw, raw_dtype=t)
        values = dequantize(raw, t).astype(np.float32)
        assert values.shape == (rows, cols) and np.isfinite(values).all(), name
        expected[name] = np.ascontiguousarray(values)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_np(expected, str(out / "expected.safetensors"))


def convert(fixture, outtype):
    out = OUT / f"{fixture}-{outtype}"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(LLAMA_CPP / "convert_hf_to_gguf.py"), str(FIXTURES / fixture),
                    "--outtype", outtype, "--outfile", str(out / "model.gguf")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ref = json.loads((FIXTURES / fixture / "reference.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(out), gguf_file="model.gguf")
    model = AutoModelForCausalLM.from_pretrained(str(out), gguf_file="model.gguf", dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    prompts, tensors = [], {}
    for i, p in enumerate(ref["prompts"]):
        text = p["text"]
        ids = p["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            greedy = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                    pad_token_id=0)[0, len(ids):].tolist()
        tensors[f"prompt{i}.last_logits"] = logits.contiguous()
        prompts.append({"name": p["name"], "kind": p["kind"], "messages": p.get("messages"),
                        "add_generation_prompt": p.get("add_generation_prompt"),
                        "template_kwargs": p.get("template_kwargs"),
                        "text": text, "input_ids": ids,
                        "transformers_gguf_ids": tok(text, add_special_tokens=True).input_ids,
                        "argmax": int(logits.argmax()), "greedy_ids": greedy})
    save_torch(tensors, str(out / "reference.safetensors"))
    (out / "reference.json").write_text(json.dumps({
        "fixture": fixture, "outtype": outtype,
        "made_by": "llama.cpp convert_hf_to_gguf.py (llama-cpp-python 0.3.36 sdist); "
                   "transformers 4.57.6 from_pretrained(gguf_file=...), f32, eager",
        "prompts": prompts}, indent=1, ensure_ascii=False))


dequant_fixture()
for fixture, types in [("tiny-qwen2", ["q8_0", "f16"]), ("tiny-llama", ["q8_0", "f32"])]:
    for t in types:
        convert(fixture, t)
