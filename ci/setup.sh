#!/usr/bin/env bash
# Installs what building and testing wasmcell needs on a fresh Debian 12 machine with rustup.
# Idempotent; safe to run before every build.
set -euo pipefail

# The guest unikernel's targets, the sample workloads' targets and the arm64 host's (the
# emulated-arm64 stage cross-builds; the x86-64 host target is always there).
rustup target add x86_64-unknown-none aarch64-unknown-none aarch64-unknown-linux-gnu wasm32-wasip1 wasm32-wasip2 >/dev/null
rustup component add rustfmt clippy >/dev/null

# protoc: the CRI client's (ci/cri) gRPC bindings are generated at build time. ip (iproute2):
# the name-lookup tests make network namespaces of their own.
if ! command -v protoc >/dev/null || ! command -v ip >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler iproute2 >/dev/null
fi

if [ ! -e /dev/kvm ]; then
    echo "ci/setup.sh: /dev/kvm is missing: wasmcell runs (and tests) real KVM microVMs" >&2
    exit 1
fi
