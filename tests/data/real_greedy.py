"""transformers' greedy continuation of a real model folder, for the browser's real-model test.

Usage: real_greedy.py MODEL_DIR  -> writes MODEL_DIR/greedy.json

transformers 4.57.6 (the test venv), eager attention, float32 compute on the folder's own
weights (the bf16 file upcast, as `from_pretrained(dtype=torch.float32)` loads it):
the prompt "The capital of France is" (no chat template), 8 new tokens, do_sample=False.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = "The capital of France is"
NEW = 8

d = sys.argv[1]
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(d)
model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
model.eval()
ids = tok(PROMPT, return_tensors="pt").input_ids
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=NEW, do_sample=False)
new = out[0, ids.shape[1]:].tolist()
json.dump(
    {
        "prompt": PROMPT,
        "input_ids": ids[0].tolist(),
        "max_new_tokens": NEW,
        "new_ids": new,
        "text": tok.decode(new, skip_special_tokens=True),
        "made_by": "tests/data/real_greedy.py, transformers " + __import__("transformers").__version__,
    },
    open(f"{d}/greedy.json", "w"),
    indent=1,
)
print(tok.decode(new, skip_special_tokens=True))
