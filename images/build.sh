#!/usr/bin/env bash
# Builds the sample workloads (images/samples) into target/images: as WASI preview 1 core modules
# (wasm32-wasip1) and as WASI 0.2 components (wasm32-wasip2) from the same sources.
set -euo pipefail
cd "$(dirname "$0")/.."
build() {
    cargo build --release --locked --target "$1" --manifest-path images/Cargo.toml --target-dir target/images "${@:2}"
}
build wasm32-wasip1 --features preview1-only
build wasm32-wasip2 --features preview2-only
echo "samples: $(ls target/images/wasm32-wasip1/release/*.wasm target/images/wasm32-wasip2/release/*.wasm | tr '\n' ' ')"
