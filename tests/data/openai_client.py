#!/usr/bin/env python3
"""Runs calls with the official `openai` Python package against an OpenAI-compatible server
and prints what the client got, for tests/openai.rs to check. Usage:
openai_client.py BASE_URL API_KEY < plan.json

plan.json: a list of steps; each step is a list of calls run concurrently (one thread each):
  {"kind": "chat" | "completion" | "models", "args": {...keyword arguments of create()...},
   "key": optional API key for this call, "cancel_after": N (streams: close after N chunks)}
Prints one JSON line: a list (per step) of lists (per call) of results:
  {"response": model_dump()} | {"chunks": [model_dump(), ...]} | {"models": [ids]}
  | {"error": {"class", "status", "body", "retry_after"}}.
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import openai


def run(base, key, call):
    client = openai.OpenAI(base_url=base, api_key=call.get("key", key), max_retries=0,
                           timeout=600)
    try:
        if call["kind"] == "models":
            return {"models": [m.id for m in client.models.list()]}
        create = (client.chat.completions.create if call["kind"] == "chat"
                  else client.completions.create)
        args = call["args"]
        if not args.get("stream"):
            return {"response": create(**args).model_dump()}
        chunks = []
        stream = create(**args)
        for chunk in stream:
            chunks.append(chunk.model_dump())
            if call.get("cancel_after") and len(chunks) >= call["cancel_after"]:
                stream.close()
                break
        return {"chunks": chunks}
    except openai.APIStatusError as e:
        return {"error": {"class": type(e).__name__, "status": e.status_code, "body": e.body,
                          "retry_after": e.response.headers.get("retry-after")}}


def main():
    base, key = sys.argv[1], sys.argv[2]
    plan = json.load(sys.stdin)
    out = []
    for step in plan:
        with ThreadPoolExecutor(max_workers=max(1, len(step))) as pool:
            out.append(list(pool.map(lambda c: run(base, key, c), step)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
