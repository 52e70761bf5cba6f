#!/usr/bin/env python3
"""Aggregate decode throughput of an OpenAI-compatible server under concurrent clients, with
the official `openai` client. Usage:
  serve_load.py BASE_URL MODEL --clients 1,4,16 --gen 64 [--prompt-words 32]
Each of N clients streams one completion of exactly --gen tokens (greedy; distinct prompts,
so no prefix is shared) at the same time. Reports per N: wall time, total completion tokens,
aggregate tokens/s over the wall time, and aggregate decode tokens/s (tokens after each
client's first one, over the span from the first client's first token to the last token).
Prints one JSON line per N. With --check, each prompt of the largest N is first asked alone,
one after another, and every concurrent answer must equal its answer alone (no cross-talk
between the rows of a batch); the result says how many matched."""
import argparse
import json
import threading
import time

import openai


def one(client, model, prompt, gen, out, i):
    t_first = None
    n = usage = 0
    text = ""
    stream = client.completions.create(model=model, prompt=prompt, max_tokens=gen,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True},
                                       extra_body={"ignore_eos": True})
    for chunk in stream:
        for c in chunk.choices:
            if c.text:
                text += c.text
                n += 1
                if t_first is None:
                    t_first = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    out[i] = (t_first, time.perf_counter(), usage or n, text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("model")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=32)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base, api_key="bench", max_retries=0, timeout=3600)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    counts = [int(x) for x in a.clients.split(",")]
    prompt_of = lambda i: " ".join(words[(i + j) % len(words)] + str(i)
                                   for j in range(a.prompt_words))
    alone = {}
    if a.check:
        for i in range(max(counts)):
            got = [None]
            one(client, a.model, prompt_of(i), a.gen, got, 0)
            alone[i] = got[0][3]
    for n in counts:
        prompts = [prompt_of(i) for i in range(n)]
        out = [None] * n
        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(client, a.model, prompts[i], a.gen, out, i))
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        tokens = sum(o[2] for o in out)
        first = min(o[0] for o in out)
        last = max(o[1] for o in out)
        decode = tokens - n
        same = sum(1 for i in range(n) if alone.get(i) == out[i][3]) if alone else None
        print(json.dumps({
            "same_text_as_alone": same,
            "clients": n, "gen": a.gen, "wall_s": round(wall, 2), "tokens": tokens,
            "aggregate_tok_s": round(tokens / wall, 2),
            "decode_tok_s": round(decode / (last - first), 2) if last > first else None,
        }), flush=True)


if __name__ == "__main__":
    main()
