#!/usr/bin/env bash
# Benchmark (not a test): `ctr run --rm` of hello through containerd, wasmcell (the hello sample
# in a microVM) vs runc (a static native hello), alternating, on one private containerd.
# Prints each side's median and quartiles of wall time and the ratio. WASMCELL_BENCH_RUNS=N
# (default 30) runs per side.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
source ci/e2e/lib.sh

RUNS=${WASMCELL_BENCH_RUNS:-30}
install_packages containerd runc containernetworking-plugins procps
cargo build --release --locked -p wasmcell -p wasmcell-shim -p wasmcell-image --examples --bins
images/build.sh >/dev/null

e2e_workdir wasmcell-bench
start_containerd "$DIR/containerd" "$DIR/bin"
ctr_() { ctr --address "$CTR_SOCK" --namespace bench "$@"; }

"$REPO/target/release/wasmcell" image build -t bench.test/hello:latest -o "$DIR/hello.tar" \
    target/images/wasm32-wasip1/release/hello.wasm >/dev/null
native_image bench.test/native:latest images/native/hello_native.rs "$DIR/native.tar"
ctr_ images import "$DIR/hello.tar" >/dev/null
ctr_ images import "$DIR/native.tar" >/dev/null

# One warm-up each (snapshot unpack, AOT cache), then alternate so drift hits both alike.
ctr_ run --rm --runtime io.containerd.wasmcell.v1 bench.test/hello:latest warm-w >/dev/null
ctr_ run --rm bench.test/native:latest warm-r >/dev/null
: >"$DIR/wasmcell.ms"
: >"$DIR/runc.ms"
for i in $(seq "$RUNS"); do
    t0=$(now_ns)
    ctr_ run --rm --runtime io.containerd.wasmcell.v1 bench.test/hello:latest "w$i" >/dev/null
    t1=$(now_ns)
    ctr_ run --rm bench.test/native:latest "r$i" >/dev/null
    t2=$(now_ns)
    elapsed_ms "$t0" "$t1" >>"$DIR/wasmcell.ms"
    elapsed_ms "$t1" "$t2" >>"$DIR/runc.ms"
done

echo "ctr run --rm hello, $RUNS runs each (ms: p25 / median / p75)"
compare "wasmcell (Wasm in a microVM)" "$DIR/wasmcell.ms" "runc (static native binary)" "$DIR/runc.ms"
