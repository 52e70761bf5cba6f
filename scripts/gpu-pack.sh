#!/usr/bin/env bash
# Pack the release binary for a GPU machine that cannot build: stripped and xz-compressed into
# dist-gpu/hubscope.xz (about 13 MB, under the device tool's 64 MiB carry limit; the
# uncompressed binary is over it). scripts/gpu-check.sh unpacks it there.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubscope-target}"
cargo build --locked --release -p hubscope
mkdir -p dist-gpu
strip -o dist-gpu/hubscope "$CARGO_TARGET_DIR/release/hubscope"
xz -T2 -6 -f dist-gpu/hubscope
ls -l dist-gpu/hubscope.xz
