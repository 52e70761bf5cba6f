"""GGUF files for the header-only view, written by gguf-py (llama.cpp's own Python package,
PyPI `gguf`), with what gguf-py's GGUFReader reads back from them as the expected values.

    make_gguf.py OUT_DIR LLAMA_CPP_MODELS_DIR

- OUT_DIR/repo/tiny-q4_k_m.gguf: a qwen2-architecture file whose metadata holds a tokenizer of
  200,000 tokens (so the header, about 3.3 MB, takes several reads from a 1 MiB first read), a
  chat template, file_type 15 (Q4_K_M); tensors of types F32, F16, BF16, Q8_0, Q4_0, Q5_1,
  Q4_K, Q5_K, Q6_K and Q2_K. Tensor bytes are random: only the header is read.
- OUT_DIR/repo/tiny-q8_0.gguf: a small second file of the same repo (so `--file` must pick).
- OUT_DIR/vocab/ggml-vocab-*.gguf: llama.cpp's own vocabulary files (19 architectures, written
  by its converter, real tokenizers and some chat templates, no tensors), copied from the
  llama.cpp sources of the PyPI llama-cpp-python 0.3.36 sdist.
- OUT_DIR/expected.json: per file, GGUFReader's tensors (name, shape outermost first, type,
  bytes, values), data offset and the metadata values the tests compare; for the vocabulary
  files their keys, architecture, token count and chat template.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES

OUT = Path(sys.argv[1])
LLAMA_CPP_MODELS = Path(sys.argv[2])
REPO = OUT / "repo"
REPO.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tensor(w, name, shape, qtype):
    """A tensor of `shape` (outermost first) and type `qtype`, random bytes."""
    block, size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape))
    assert n % block == 0, (name, shape, qtype)
    if qtype == T.F32:
        w.add_tensor(name, rng.standard_normal(shape, dtype=np.float32))
    elif qtype == T.F16:
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float16))
    else:
        # Quantized rows as bytes: gguf-py derives the shape from the byte shape.
        row = shape[-1] // block * size
        raw = rng.integers(0, 256, size=(n // shape[-1], row), dtype=np.uint8)
        w.add_tensor(name, raw.reshape(*shape[:-1], row), raw_dtype=qtype)


def write(path, tokens, layers, file_type, types):
    w = GGUFWriter(str(path), "qwen2")
    w.add_name(path.stem)
    w.add_context_length(32768)
    w.add_block_count(layers)
    w.add_embedding_length(256)
    w.add_feed_forward_length(512)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(file_type)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(tokens)])
    w.add_chat_template(TEMPLATE)
    # Embedding rows fewer than tokens: only the header matters here, and it stays small.
    rows = min(tokens, 4096)
    tensor(w, "token_embd.weight", (rows, 256), types["embd"])
    for l in range(layers):
        p = f"blk.{l}"
        tensor(w, f"{p}.attn_norm.weight", (256,), T.F32)
        tensor(w, f"{p}.attn_q.weight", (256, 256), types["q"])
        tensor(w, f"{p}.attn_k.weight", (128, 256), types["k"])
        tensor(w, f"{p}.attn_v.weight", (128, 256), types["v"])
        tensor(w, f"{p}.attn_output.weight", (256, 256), types["o"])
        tensor(w, f"{p}.ffn_norm.weight", (256,), T.F32)
        tensor(w, f"{p}.ffn_gate.weight", (512, 256), types["gate"])
        tensor(w, f"{p}.ffn_up.weight", (512, 256), types["up"])
        tensor(w, f"{p}.ffn_down.weight", (256, 512), types["down"])
    tensor(w, "output_norm.weight", (256,), T.F32)
    tensor(w, "output.weight", (rows, 256), types["head"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


write(REPO / "tiny-q4_k_m.gguf", 200_000, 2, 15,
      dict(embd=T.F16, q=T.Q8_0, k=T.Q4_0, v=T.Q5_1, o=T.Q4_K, gate=T.Q5_K, up=T.Q6_K,
           down=T.Q2_K, head=T.BF16))
write(REPO / "tiny-q8_0.gguf", 1000, 1, 7,
      dict(embd=T.Q8_0, q=T.Q8_0, k=T.Q8_0, v=T.Q8_0, o=T.Q8_0, gate=T.Q8_0, up=T.Q8_0,
           down=T.Q8_0, head=T.Q8_0))

expected = {}
for f in sorted(REPO.glob("*.gguf")):
    r = GGUFReader(str(f))
    field = lambda k: r.fields[k].contents()
    expected[f.name] = {
        "size": f.stat().st_size,
        "data_offset": r.data_offset,
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "context_length": field("qwen2.context_length"),
        "file_type": field("general.file_type"),
        "tokens": len(r.fields["tokenizer.ggml.tokens"].data),
        "chat_template": field("tokenizer.chat_template"),
        "parameters": int(sum(int(t.n_elements) for t in r.tensors)),
        "tensors": [{"name": t.name, "shape": [int(d) for d in reversed(t.shape)],
                     "type": t.tensor_type.name, "bytes": int(t.n_bytes),
                     "values": int(t.n_elements)} for t in r.tensors],
    }
VOCAB = OUT / "vocab"
VOCAB.mkdir(exist_ok=True)
for src in sorted(LLAMA_CPP_MODELS.glob("ggml-vocab-*.gguf")):
    shutil.copy(src, VOCAB / src.name)
    r = GGUFReader(str(VOCAB / src.name))
    expected["vocab/" + src.name] = {
        "size": src.stat().st_size,
        "keys": list(r.fields.keys())[3:],  # without GGUF.version, tensor_count, kv_count
        "architecture": r.fields["general.architecture"].contents(),
        "tokens": len(r.fields["tokenizer.ggml.tokens"].data),
        "chat_template": r.fields["tokenizer.chat_template"].contents()
        if "tokenizer.chat_template" in r.fields else None,
        "tensors": len(r.tensors),
    }
(OUT / "expected.json").write_text(json.dumps(expected, indent=1))
print({k: v["size"] for k, v in expected.items()})
