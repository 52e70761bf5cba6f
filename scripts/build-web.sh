#!/usr/bin/env bash
# Build the browser app into dist/ with trunk, offline: installs the wasm target, trunk and the
# wasm-bindgen-cli that matches Cargo.lock first (once), so trunk never downloads a tool.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
rustup target add wasm32-unknown-unknown >/dev/null
if ! trunk --version 2>/dev/null | grep -q '^trunk 0\.21'; then
  cargo install --locked trunk --version '~0.21'
fi
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[" ]/,""); sub("version=",""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $want\$"; then
  cargo install wasm-bindgen-cli --version "$want" --force
fi
trunk build --offline --release
