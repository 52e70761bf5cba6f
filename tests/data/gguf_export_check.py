"""Peers for the GGUF export tests (tests/gguf.rs), in the test venv (gguf 0.19.0, transformers
4.57.6, torch):

    gguf_export_check.py read FILE.gguf
        gguf-py's GGUFReader on FILE: JSON {"metadata": {key: [type, value]}, "tensors":
        {name: [shape (PyTorch order), type name, sha256 of the data bytes]}} (string arrays and
        number arrays whole; the value type of an array is "array[<element type>]").
    gguf_export_check.py logits FILE.gguf IDS
        transformers' `from_pretrained(dir, gguf_file=name)` (dequantized to f32, eager): the
        last-position logits of the comma-separated IDS, as JSON.
    gguf_export_check.py wide OUT_DIR SMOLLM_FIXTURE
        A llama model whose rows are whole Q4_K blocks (hidden 256, intermediate 512, head_dim
        64, 2 layers, 4 / 1 heads), random weights (seed 0, 0.2·N(0,1) as the shared fixtures,
        norms 1 + 0.1·N), with the tiny-llama fixture's SmolLM2 tokenizer: `save_pretrained` f32.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def read(path):
    from gguf import GGUFReader
    from gguf.constants import GGUFValueType

    r = GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        t = f.types[0]
        if t == GGUFValueType.ARRAY:
            et = f.types[-1]
            kind = f"array[{et.name.lower()}]"
            if et == GGUFValueType.STRING:
                value = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                value = [f.parts[i].tolist()[0] for i in f.data]
        elif t == GGUFValueType.STRING:
            kind, value = "string", bytes(f.parts[f.data[0]]).decode("utf-8")
        else:
            kind, value = t.name.lower(), f.parts[f.data[0]].tolist()[0]
        meta[f.name] = [kind, value]
    tensors = {}
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape.tolist())]
        digest = hashlib.sha256(np.ascontiguousarray(t.data).view(np.uint8).tobytes()).hexdigest()
        tensors[t.name] = [shape, t.tensor_type.name, digest]
    print(json.dumps({"metadata": meta, "tensors": tensors}))


def logits(path, ids):
    import torch
    from transformers import AutoModelForCausalLM

    p = Path(path)
    model = AutoModelForCausalLM.from_pretrained(
        p.parent, gguf_file=p.name, torch_dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        out = model(torch.tensor([[int(i) for i in ids.split(",")]])).logits[0, -1]
    print(json.dumps(out.tolist()))


def wide(out, fixture):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fixture = Path(fixture)
    cfg = json.loads((fixture / "config.json").read_text())
    cfg.update(hidden_size=256, intermediate_size=512, head_dim=64)
    config = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures",)})
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(fixture / f, Path(out) / f)


if __name__ == "__main__":
    {"read": read, "logits": logits, "wide": wide}[sys.argv[1]](*sys.argv[2:])
