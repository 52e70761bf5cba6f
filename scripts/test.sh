#!/usr/bin/env bash
# All of hubscope's tests, on a fresh machine: installs what they need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
export CARGO_TERM_COLOR=never

# The model crate must build for the browser (no filesystem, threads or blocking reads).
rustup target add wasm32-unknown-unknown
cargo check --locked --target wasm32-unknown-unknown -p hubscope-core

# Unit tests, the transformers reference tests on ../shared/fixtures, and the CLI tests.
cargo test --locked --release --workspace
