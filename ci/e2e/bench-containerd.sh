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

DIR=$(mktemp -d /tmp/wasmcell-bench.XXXXXX)
trap 'stop_containerd; rm -rf "$DIR"' EXIT
mkdir -p "$DIR/bin"
export WASMCELL_CACHE_DIR=$DIR/cache
start_containerd "$DIR/containerd" "$DIR/bin"
ctr_() { ctr --address "$CTR_SOCK" --namespace bench "$@"; }

"$REPO/target/release/wasmcell" image build -t bench.test/hello:latest -o "$DIR/hello.tar" \
    target/images/wasm32-wasip1/release/hello.wasm >/dev/null
rustc -O -C target-feature=+crt-static -o "$DIR/hello-native" images/native/hello_native.rs
"$REPO/target/release/examples/pack" bench.test/native:latest "$DIR/hello-native" "$DIR/native.tar"
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

read -r w25 w50 w75 <<<"$(quartiles "$DIR/wasmcell.ms")"
read -r r25 r50 r75 <<<"$(quartiles "$DIR/runc.ms")"
echo "ctr run --rm hello, $RUNS runs each (ms: p25 / median / p75)"
echo "  wasmcell (Wasm in a microVM): $w25 / $w50 / $w75"
echo "  runc (static native binary):  $r25 / $r50 / $r75"
echo "  ratio of medians: $(awk -v w="$w50" -v r="$r50" 'BEGIN { printf "%.2f", w / r }')x"
