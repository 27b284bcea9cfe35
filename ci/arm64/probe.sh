#!/usr/bin/env bash
# Smoke test of the arm64 CI VM: cross-compiles ci/arm64/kvm-probe.c (static aarch64) and runs
# it through ci/arm64/run-in-vm.sh, which proves the emulated arm64 guest has working nested KVM
# (VM and vCPU creation, guest memory, KVM_RUN, an MMIO exit). Meant for ci/test.sh to run before
# the arm64 tests, so that a broken VM fails early and clearly.
# Usage: ci/arm64/probe.sh [TIMEOUT_SECONDS]   (runs ci/arm64/setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."

ci/arm64/setup.sh

payload=$(mktemp -d "${TMPDIR:-/tmp}/wasmcell-kvm-probe.XXXXXX")
trap 'rm -rf "$payload"' EXIT
aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror -o "$payload/kvm-probe" ci/arm64/kvm-probe.c
cat >"$payload/run.sh" <<'EOF'
#!/bin/sh
exec ./kvm-probe
EOF
chmod 0755 "$payload/run.sh"

ci/arm64/run-in-vm.sh "$payload" "${1:-300}"
