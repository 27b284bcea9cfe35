#!/usr/bin/env bash
# Builds the sample workloads (images/samples) for wasm32-wasip1 into target/images.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --target wasm32-wasip1 --manifest-path images/Cargo.toml --target-dir target/images
echo "samples: $(ls target/images/wasm32-wasip1/release/*.wasm | tr '\n' ' ')"
