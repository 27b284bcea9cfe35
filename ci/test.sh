#!/usr/bin/env bash
# The whole test suite: formatting, lints (host workspace and guest), unit and integration tests
# on real KVM. One cargo profile (release) for everything, so nothing is built twice.
set -euo pipefail
cd "$(dirname "$0")/.."

ci/setup.sh

echo "== fmt"
cargo fmt --all --check
(cd guest/kernel && cargo fmt --check)
(cd images && cargo fmt --check)
(cd fuzz && cargo fmt --check)

echo "== clippy"
cargo clippy --release --locked --all-targets -- -D warnings
# Same target dir as vmm/build.rs's guest build.
(cd guest/kernel && cargo clippy --release --locked --target-dir ../../target/guest -- -D warnings)
# The aarch64 side of the VMM and the guest (the arm64 stage below runs them).
cargo clippy --release --locked --target aarch64-unknown-linux-gnu -p wasmcell-vmm -p wasmcell-jail -p wasmcell-abi --all-targets -- -D warnings
(cd guest/kernel && cargo clippy --release --locked --target aarch64-unknown-none --target-dir ../../target/guest -- -D warnings)
(cd images && cargo clippy --release --locked --target wasm32-wasip1 --features preview1-only --target-dir ../target/images -- -D warnings)
(cd images && cargo clippy --release --locked --target wasm32-wasip2 --features preview2-only --target-dir ../target/images -- -D warnings)

echo "== tests"
cargo test --release --locked --workspace

echo "== fuzz (a short run of every target)"
ci/fuzz.sh

echo "== aarch64 under emulation (nested KVM in qemu-system-aarch64)"
ci/arm64/test.sh
echo "== end-to-end: containerd"
ci/e2e/containerd.sh
echo "== end-to-end: Kubernetes (CRI)"
ci/e2e/kubernetes.sh
