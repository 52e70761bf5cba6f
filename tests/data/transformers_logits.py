#!/usr/bin/env python3
"""Last-position logits of a model folder as transformers computes them (f32, eager), with a
PEFT adapter applied when given: how the tests check that transformers loads hubscope's
exports and PEFT loads hubscope's adapters.

    transformers_logits.py MODEL_DIR IDS [ADAPTER_DIR]   (IDS: comma-separated token ids)

Prints JSON: {"ids": top-16 token ids, "values": their logits}.
"""
import json, sys

import torch
from transformers import AutoModelForCausalLM

model_dir, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
model = AutoModelForCausalLM.from_pretrained(
    model_dir, dtype=torch.float32, attn_implementation="eager"
)
if len(sys.argv) > 3:
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, sys.argv[3])
model.eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0, -1].float()
values, top = logits.topk(16)
print(json.dumps({"ids": top.tolist(), "values": values.tolist()}))
