#!/usr/bin/env python3
"""LoRA trainable-parameter counts of crates/hubscope/shapes/*.json as PEFT counts them: the model
built on the meta device by transformers, wrapped by peft.get_peft_model with LoraConfig(r,
target_modules), then sum(p.numel() for trainable p). Prints `name r targets count` lines.

    python3 tests/data/count_lora_params.py
"""
import glob, os
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
shapes = os.path.join(here, "..", "..", "crates", "hubscope", "shapes")
for path in sorted(glob.glob(os.path.join(shapes, "*.json"))):
    config = AutoConfig.from_pretrained(path)
    for r, targets in [(8, ALL), (16, ["q_proj", "v_proj"])]:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
            peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
        n = sum(p.numel() for p in peft.parameters() if p.requires_grad)
        print(os.path.basename(path)[:-5], r, ",".join(targets), n)
