#!/usr/bin/env python3
"""Perplexity of a text under a model folder as transformers computes it (f32, eager): the
text tokenized by the folder's tokenizer, one forward pass, the mean cross-entropy of every
token after the first — what `hubscope perplexity` must reproduce step by step.

    transformers_perplexity.py MODEL_DIR TEXT_FILE MAX_TOKENS

Prints JSON: {"tokens": n, "perplexity": p, "top": [argmax at each scored position]}.
"""
import json, math, sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, text_file, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(model_dir)
ids = tok(open(text_file, encoding="utf-8").read()).input_ids[: max_tokens + 1]
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0, :-1].double()
nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="mean").item()
print(json.dumps({"tokens": len(ids) - 1, "perplexity": math.exp(nll), "top": logits.argmax(-1).tolist()}))
