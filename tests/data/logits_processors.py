"""transformers' logits processors on given logits: the distribution a sampled step draws from.

Reads JSON cases on stdin ({logits, history, repetition_penalty, temperature, top_k, top_p,
min_tokens_to_keep}) and prints, per case, the softmax of the processed scores (0 where a filter
removed the id). The processors are built as GenerationMixin._get_logits_processor builds them
for do_sample=True: repetition penalty, temperature, top-k, top-p, each only when it changes
something (temperature != 1, top_k != 0, top_p < 1, penalty != 1).
"""
import json
import sys

import torch
from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

out = []
for c in json.load(sys.stdin):
    scores = torch.tensor([c["logits"]], dtype=torch.float32)
    ids = torch.tensor([c["history"] or [0]], dtype=torch.long)
    keep = c["min_tokens_to_keep"]
    procs = []
    if c["repetition_penalty"] != 1.0 and c["history"]:
        procs.append(RepetitionPenaltyLogitsProcessor(c["repetition_penalty"]))
    if c["temperature"] != 1.0:
        procs.append(TemperatureLogitsWarper(c["temperature"]))
    if c["top_k"] != 0:
        procs.append(TopKLogitsWarper(top_k=c["top_k"], min_tokens_to_keep=keep))
    if c["top_p"] < 1.0:
        procs.append(TopPLogitsWarper(top_p=c["top_p"], min_tokens_to_keep=keep))
    for p in procs:
        scores = p(ids, scores)
    out.append(torch.softmax(scores, dim=-1)[0].tolist())
print(json.dumps(out))
