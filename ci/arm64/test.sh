#!/usr/bin/env bash
# The emulated-arm64 stage of ci/test.sh: the aarch64 VMM and guest, cross-built on this x86-64
# machine, run on real (nested) KVM inside an emulated arm64 Linux VM (ci/arm64/run-in-vm.sh):
#   1. the VMM's unit tests and its KVM tests (every way a guest ends: selftests.rs; a run's
#      lifecycle: lifecycle.rs) — the guest boots, exits, panics, faults and times out — and the
#      attacker's guest (hostile.rs, hostile_flood.rs: page tables, other vCPUs, device rings and
#      buffers, map-memory abuse, EL1 instructions and registers, undecodable MMIO, floods);
#   2. a pod: two workloads side by side in one VM, a third on the first's vCPU once it ended
#      (vmm/examples/pod.rs);
#   3. `wasmcell run` of the samples and hand-written modules of ci/arm64/cases.txt and the
#      client/server pairs of ci/arm64/pairs.txt, each compared with what x86-64's
#      `wasmcell run` answers (ci/arm64/samples.sh).
# One VM boot runs both. Static aarch64 binaries (glibc, `crt-static`), so the VM needs no
# libraries. Bounded by ARM64_STAGE_TIMEOUT seconds of VM time (default 1200).
set -euo pipefail
cd "$(dirname "$0")/../.."

target=aarch64-unknown-linux-gnu
ci/arm64/setup.sh
rustup target add "$target" aarch64-unknown-none >/dev/null
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"

payload=$(mktemp -d "${TMPDIR:-/tmp}/wasmcell-arm64-stage.XXXXXX")
trap 'rm -rf "$payload"' EXIT

echo "ci/arm64/test.sh: cross-building the VMM's tests and wasmcell for $target"
tests=$(cargo test --release --locked -p wasmcell-vmm --target "$target" --no-run 2>&1 |
    sed -n 's/^ *Executable \(unittests src\/lib.rs\|tests\/\(selftests\|lifecycle\|hostile\|hostile_flood\).rs\) (\(.*\))$/\3/p')
[ "$(echo "$tests" | wc -l)" -eq 5 ] || { echo "ci/arm64/test.sh: expected 5 VMM test binaries, got: $tests" >&2; exit 1; }
cargo build --release --locked -p wasmcell-vmm --target "$target" --example pod
# The CLI and the containerd shim (its binary and the pod VMM it spawns) in one build, so that
# they share one aarch64 wasmtime and Cranelift.
cargo build --release --locked -p wasmcell -p wasmcell-shim --target "$target"
# The x86-64 side of the comparison, and the samples.
cargo build --release --locked -p wasmcell
images/build.sh >/dev/null

mkdir -p "$payload/vmm"
for test in $tests; do
    cp "$test" "$payload/vmm/$(basename "$test" | sed 's/-[0-9a-f]*$//')"
done
cp "target/$target/release/examples/pod" "$payload/vmm/pod"
cp "target/$target/release/containerd-shim-wasmcell-v1" "target/$target/release/wasmcell-vmm" "$payload/vmm/"
# The attacker's image, built beside the arm64 guest by vmm/build.rs (the tests find it through
# WASMCELL_HOSTILE_GUEST in the VM).
cp target/guest/aarch64-unknown-none/release/wasmcell-hostile "$payload/vmm/wasmcell-hostile"
ci/arm64/samples.sh target/release/wasmcell "target/$target/release/wasmcell" "$payload/samples"
cat >"$payload/run.sh" <<'SCRIPT'
#!/bin/sh
set -e
echo "== arm64: the VMM's KVM tests"
./vmm/selftests --test-threads 1
./vmm/lifecycle
./vmm/wasmcell_vmm --test-threads 1 -q
echo "== arm64: the attacker's guest"
export WASMCELL_HOSTILE_GUEST=$PWD/vmm/wasmcell-hostile
./vmm/hostile --test-threads 1
./vmm/hostile_flood
echo "== arm64: a pod: sleep and hello side by side, then hello on hello's vCPU, reset"
./vmm/pod samples/cases/sleep.cwasm 1500 -- samples/cases/hello.cwasm -- --then samples/cases/hello.cwasm     >/tmp/pod.out || { cat /tmp/pod.out; echo "FAILED: a workload of the pod did not exit 0"; exit 1; }
cat /tmp/pod.out
expected="Hello, world!
Hello, world!
slept at least 1500 ms"
if [ "$(head -n 3 /tmp/pod.out)" != "$expected" ]; then
    echo "FAILED: the pod's workloads did not run side by side (expected both hellos before the sleep ended)"
    exit 1
fi
echo "== arm64: the containerd shim's binaries start (containerd itself does not run here)"
status=0
./vmm/containerd-shim-wasmcell-v1 >/tmp/shim.out 2>&1 || status=$?
grep -q "Shim namespace cannot be empty" /tmp/shim.out && [ "$status" = 1 ] ||
    { cat /tmp/shim.out; echo "FAILED: the shim did not start and refuse a missing namespace"; exit 1; }
status=0
./vmm/wasmcell-vmm /nonexistent/plan >/tmp/vmm.out 2>&1 || status=$?
grep -q "cannot read the plan /nonexistent/plan" /tmp/vmm.out && [ "$status" != 0 ] ||
    { cat /tmp/vmm.out; echo "FAILED: wasmcell-vmm did not start and refuse a missing plan"; exit 1; }
echo "containerd-shim-wasmcell-v1 and wasmcell-vmm start and refuse bad input"
echo "== arm64: figures under emulation (they track regressions, not real hardware)"
./samples/wasmcell boot 2>&1 | tail -n 1
for _ in 1 2 3; do
    echo "wasmcell run hello:"
    time ./samples/wasmcell run --allow-precompiled samples/cases/hello.cwasm >/dev/null
done
echo "== arm64: wasmcell run, compared with x86-64"
cd samples && ./run.sh
SCRIPT
chmod 0755 "$payload/run.sh"
ci/arm64/run-in-vm.sh "$payload" "${ARM64_STAGE_TIMEOUT:-1200}"
