"""PEFT's step losses for LoRA training with batches of 2, padded: the reference for hubscope's
--batch-size. tiny-qwen2 (transformers 4.57.6, eager, f32) with the fixture's adapter_init made
trainable, the fixture's examples (their token ids and labels, as PEFT rendered them) in order,
batches of 2 right-padded (pad id 0, attention_mask 0, label -100), AdamW(lr 1e-3, betas
(0.9, 0.999), eps 1e-8, weight_decay 0), 2 epochs. The loss of a batch is transformers' causal-LM
loss: the mean over every labelled token of the batch.

    peft_batch_reference.py FIXTURES   ->  {"steps": [loss, ...]}
"""
import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

fx = Path(sys.argv[1])
lora = fx / "lora-tiny-qwen2"
ref = json.loads((lora / "reference.json").read_text())
torch.manual_seed(0)
base = AutoModelForCausalLM.from_pretrained(fx / "tiny-qwen2", torch_dtype=torch.float32,
                                            attn_implementation="eager")
model = PeftModel.from_pretrained(base, lora / "adapter_init", is_trainable=True)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
examples = ref["examples"]
steps = []
for epoch in range(2):
    for b in range(0, len(examples), 2):
        batch = examples[b:b + 2]
        n = max(len(e["input_ids"]) for e in batch)
        ids = torch.tensor([e["input_ids"] + [0] * (n - len(e["input_ids"])) for e in batch])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (n - len(e["input_ids"])) for e in batch])
        labels = torch.tensor([e["labels"] + [-100] * (n - len(e["labels"])) for e in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append(loss.item())
print(json.dumps({"steps": steps, "lengths": [len(e["input_ids"]) for e in examples]}))
