#!/usr/bin/env python3
"""Parameter counts of crates/hubscope/shapes/*.json (the published configs `bench --shape` builds) as transformers computes them
(sum(p.numel() for p in model.parameters()), tied weights once), on the meta device: no
weights are allocated. Needs torch and transformers. Prints `name count` lines; the expected
values in tests/plan.rs must equal them.

    python3 tests/data/count_params.py
"""
import glob, json, os
import torch
from transformers import AutoConfig, AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
shapes = os.path.join(here, "..", "..", "crates", "hubscope", "shapes")
for path in sorted(glob.glob(os.path.join(shapes, "*.json"))):
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()
    n = sum(p.numel() for p in model.parameters())
    print(os.path.basename(path)[:-5], n)
