#!/usr/bin/env bash
# Benchmark (not a test): a hello pod through CRI as the kubelet drives it — RunPodSandbox,
# CreateContainer, StartContainer, until the container has exited — for a wasmcell pod (the
# hello sample) and a runc pod (a static native hello), alternating; then a hello container
# started in a pod that already runs (its VM up, for wasmcell); then 10 pods of each started in
# parallel. Teardown is not timed. WASMCELL_BENCH_RUNS=N (default 20) per side.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
source ci/e2e/lib.sh

RUNS=${WASMCELL_BENCH_RUNS:-20}
install_packages containerd runc containernetworking-plugins protobuf-compiler procps
cargo build --release --locked -p wasmcell -p wasmcell-shim -p wasmcell-image -p wasmcell-cri --examples --bins
images/build.sh >/dev/null

e2e_workdir wasmcell-bench
mkdir -p "$DIR/pods"
start_containerd "$DIR/containerd" "$DIR/bin"
ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }
cri() { "$REPO/target/release/wasmcell-cri" --socket "$CTR_SOCK" "$@"; }

native_image wasmcell.test/pause:latest images/native/pause.rs "$DIR/pause.tar"
native_image wasmcell.test/native:latest images/native/hello_native.rs "$DIR/native.tar"
"$REPO/target/release/wasmcell" image build -t wasmcell.test/hello:latest -o "$DIR/hello.tar" \
    target/images/wasm32-wasip1/release/hello.wasm >/dev/null
for tar in pause native hello; do ctr_ images import "$DIR/$tar.tar" >/dev/null; done

# hello_pod NAME HANDLER IMAGE: the pod's life up to the container's exit (timed by the caller).
hello_pod() {
    local pod c
    pod=$(cri runp --name "$1" --runtime "$2" --log-dir "$DIR/pods/$1" --save "$DIR/pods/$1.json")
    c=$(cri create "$pod" --pod-config "$DIR/pods/$1.json" --name hello --image "$3")
    cri start "$c"
    [ "$(cri wait "$c")" = 0 ]
    echo "$pod" >"$DIR/pods/$1.id"
}
teardown() { local pod; pod=$(cat "$DIR/pods/$1.id"); cri stopp "$pod" && cri rmp "$pod"; }

hello_pod warm-w wasmcell wasmcell.test/hello:latest && teardown warm-w
hello_pod warm-r "" wasmcell.test/native:latest && teardown warm-r
: >"$DIR/wasmcell.ms"
: >"$DIR/runc.ms"
for i in $(seq "$RUNS"); do
    t0=$(now_ns); hello_pod "w$i" wasmcell wasmcell.test/hello:latest; t1=$(now_ns)
    teardown "w$i"
    t2=$(now_ns); hello_pod "r$i" "" wasmcell.test/native:latest; t3=$(now_ns)
    teardown "r$i"
    elapsed_ms "$t0" "$t1" >>"$DIR/wasmcell.ms"
    elapsed_ms "$t2" "$t3" >>"$DIR/runc.ms"
done

# in_pod POD_NAME POD IMAGE N: CreateContainer + StartContainer → exited, in a running pod.
in_pod() {
    local c
    c=$(cri create "$2" --pod-config "$DIR/pods/$1.json" --name "c$4" --image "$3")
    cri start "$c"
    [ "$(cri wait "$c")" = 0 ]
}
: >"$DIR/wasmcell-in-pod.ms"
: >"$DIR/runc-in-pod.ms"
wpod=$(cri runp --name inpod-w --runtime wasmcell --log-dir "$DIR/pods/inpod-w" --save "$DIR/pods/inpod-w.json")
rpod=$(cri runp --name inpod-r --log-dir "$DIR/pods/inpod-r" --save "$DIR/pods/inpod-r.json")
in_pod inpod-w "$wpod" wasmcell.test/hello:latest 0 && in_pod inpod-r "$rpod" wasmcell.test/native:latest 0
for i in $(seq "$RUNS"); do
    t0=$(now_ns); in_pod inpod-w "$wpod" wasmcell.test/hello:latest "$i"; t1=$(now_ns)
    t2=$(now_ns); in_pod inpod-r "$rpod" wasmcell.test/native:latest "$i"; t3=$(now_ns)
    elapsed_ms "$t0" "$t1" >>"$DIR/wasmcell-in-pod.ms"
    elapsed_ms "$t2" "$t3" >>"$DIR/runc-in-pod.ms"
done
cri stopp "$wpod" && cri rmp "$wpod"
cri stopp "$rpod" && cri rmp "$rpod"

# parallel NAME HANDLER IMAGE: wall time until all 10 pods' containers have exited.
parallel() {
    local i t0 t1 pids=()
    t0=$(now_ns)
    for i in $(seq 10); do hello_pod "$1$i" "$2" "$3" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(now_ns)
    for i in $(seq 10); do teardown "$1$i"; done
    elapsed_ms "$t0" "$t1"
}
pw=$(parallel pw wasmcell wasmcell.test/hello:latest)
pr=$(parallel pr "" wasmcell.test/native:latest)

echo "hello pod, RunPodSandbox → container exited, $RUNS runs each (ms: p25 / median / p75)"
compare wasmcell "$DIR/wasmcell.ms" runc "$DIR/runc.ms"
echo "hello container in a running pod, CreateContainer → exited, $RUNS runs each (ms: p25 / median / p75)"
compare wasmcell "$DIR/wasmcell-in-pod.ms" runc "$DIR/runc-in-pod.ms"
echo "10 hello pods in parallel, until all exited (ms): wasmcell $pw, runc $pr"
