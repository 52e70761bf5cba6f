"""PEFT's step losses for LoRA training on a quantized base: the reference for QLoRA in
hubscope (`finetune FILE.gguf`, `finetune FOLDER --dtype q4_0`). transformers 4.57.6 loads the
GGUF file with `from_pretrained(dir, gguf_file=name)`, which dequantizes every tensor to f32
(eager attention); PEFT 0.21.2 attaches the lora-tiny-qwen2 fixture's adapter_init, trainable,
and follows that fixture's schedule: its examples (token ids and labels as PEFT rendered them)
one per step in the reference's order, AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8,
weight_decay 0). This is the math of bitsandbytes' QLoRA too: its matmul decodes the 4-bit
weights and multiplies in the compute dtype (here f32).

    peft_gguf_reference.py FIXTURES FILE.gguf   ->  {"steps": [loss, ...]}
"""
import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

fx, gguf = Path(sys.argv[1]), Path(sys.argv[2])
lora = fx / "lora-tiny-qwen2"
ref = json.loads((lora / "reference.json").read_text())
torch.manual_seed(0)
base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                            attn_implementation="eager")
model = PeftModel.from_pretrained(base, lora / "adapter_init", is_trainable=True)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
o = ref["optimizer"]
opt = torch.optim.AdamW(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                        weight_decay=o["weight_decay"])
steps = []
for s in ref["steps"]:
    e = ref["examples"][s["example"]]
    loss = model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    steps.append(loss.item())
print(json.dumps({"steps": steps}))
