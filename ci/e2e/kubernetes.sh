#!/usr/bin/env bash
# End-to-end at the CRI level, as the kubelet drives containerd: pods with runtime handler
# `wasmcell` (what `runtimeClassName: wasmcell` becomes) beside runc pods, through Debian's
# containerd 1.6 with CNI bridge networking. Uses `wasmcell-cri` (ci/cri) as the kubelet. Prints
# "N passed, M failed" and fails if any check did.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
source ci/e2e/lib.sh

install_packages containerd runc containernetworking-plugins protobuf-compiler procps
cargo build --release --locked -p wasmcell -p wasmcell-shim -p wasmcell-image -p wasmcell-cri --examples --bins || exit 1
images/build.sh >/dev/null || exit 1

e2e_workdir wasmcell-k8s
mkdir -p "$DIR/images" "$DIR/pods"
SAMPLES=$REPO/target/images/wasm32-wasip1/release
start_containerd "$DIR/containerd" "$DIR/bin" || exit 1
ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }
cri() { "$REPO/target/release/wasmcell-cri" --socket "$CTR_SOCK" "$@"; }

# Images in containerd's k8s.io namespace: the sandbox (pause) image runc pods need, Wasm
# samples, a native hello.
{
    native_image wasmcell.test/pause:latest images/native/pause.rs "$DIR/images/pause.tar"
    native_image wasmcell.test/native:latest images/native/hello_native.rs "$DIR/images/native.tar"
    for sample in hello exit_code sleep spin grow log_then_sleep read_paths volume_ops; do
        "$REPO/target/release/wasmcell" image build -t "wasmcell.test/$sample:latest" -o "$DIR/images/$sample.tar" \
            "$SAMPLES/$sample.wasm" >/dev/null
    done
    # WASI 0.2 components: one of the same source, and the networking samples.
    for sample in exit_code tcp_echo tcp_client volume_ops; do
        "$REPO/target/release/wasmcell" image build -t "wasmcell.test/component-$sample:latest" \
            -o "$DIR/images/component-$sample.tar" "$REPO/target/images/wasm32-wasip2/release/$sample.wasm" >/dev/null
    done
    # A wasi:http component whose image says how it is served (the shim takes the variable out).
    "$REPO/target/release/wasmcell" image build -t wasmcell.test/http-hello:latest --env WASMCELL_HTTP_ADDR=8080 \
        -o "$DIR/images/http-hello.tar" "$REPO/target/images/wasm32-wasip2/release/http_hello.wasm" >/dev/null
    # A preview-1 server, handed a listener on port 7000 by its image (the shim takes it out).
    "$REPO/target/release/wasmcell" image build -t wasmcell.test/p1-server:latest --env WASMCELL_TCP_LISTEN=7000 \
        -o "$DIR/images/p1-server.tar" "$SAMPLES/p1_server.wasm" >/dev/null
    native_image wasmcell.test/tcp-ping:latest images/native/tcp_ping.rs "$DIR/images/tcp-ping.tar"
} || { echo "building the test images failed" >&2; exit 1; }
for tar in "$DIR"/images/*.tar; do
    ctr_ images import "$tar" >/dev/null || { echo "cannot import $tar" >&2; exit 1; }
done

# The VMM processes on the node (each wasmcell pod has one: its VM).
vmms() { pgrep -c -x wasmcell-vmm; }

# CPU time (clock ticks) and context switches (all threads) of a process, for idle checks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }'; }

# What a pod can leave behind.
footprint() {
    local shims mounts netns sockets pods containers fds
    shims=$(pgrep -c -f containerd-shim-wasmcell-v1)
    mounts=$(grep -c "$DIR" /proc/mounts)
    netns=$(find /var/run/netns -mindepth 1 2>/dev/null | wc -l)
    sockets=$(find /run/containerd/s -type s 2>/dev/null | wc -l)
    pods=$(cri pods | wc -l)
    containers=$(cri ps | wc -l)
    fds=$(find /proc/"$CONTAINERD_PID"/fd -mindepth 1 2>/dev/null | wc -l)
    echo "shims=$shims mounts=$mounts netns=$netns sockets=$sockets pods=$pods containers=$containers containerd_fds=$fds"
}

# run_pod NAME RUNTIME → pod id (config saved in $DIR/pods/NAME.json, logs in $DIR/pods/NAME/).
run_pod() {
    cri runp --name "$1" --runtime "$2" --log-dir "$DIR/pods/$1" --save "$DIR/pods/$1.json"
}
# run_container POD_NAME POD_ID NAME IMAGE [ARGS...] → container id, started.
run_container() {
    local pod_name=$1 pod=$2 name=$3 image=$4 id
    shift 4
    id=$(cri create "$pod" --pod-config "$DIR/pods/$pod_name.json" --name "$name" --image "$image" -- "$@") || return 1
    cri start "$id" || return 1
    echo "$id"
}
remove_pod() { cri stopp "$1" && cri rmp "$1"; }

# One pod through its whole life: two Wasm containers (exit 0 and 3), logs, codes, teardown.
wasm_pod_cycle() { # NAME
    local pod c1 c2 code
    pod=$(run_pod "$1" wasmcell) || fail "RunPodSandbox failed"
    c1=$(run_container "$1" "$pod" hello wasmcell.test/hello:latest) || fail "hello did not start"
    c2=$(run_container "$1" "$pod" exit3 wasmcell.test/exit_code:latest /exit_code.wasm 3) || fail "exit3 did not start"
    code=$(cri wait "$c1") && [ "$code" = 0 ] || fail "hello exit code: $code"
    code=$(cri wait "$c2") && [ "$code" = 3 ] || fail "exit3 exit code: $code"
    remove_pod "$pod" || fail "stopping/removing the pod failed"
}

BASELINE=$(footprint)
echo "== baseline: $BASELINE"

t_wasm_pod_with_two_containers() {
    local pod c1 c2 code out shims
    pod=$(run_pod wasm1 wasmcell) || fail "RunPodSandbox failed"
    [ "$(cri inspectp "$pod")" = "state=SANDBOX_READY runtime_handler=wasmcell" ] || fail "pod: $(cri inspectp "$pod")"
    c1=$(run_container wasm1 "$pod" sleeper wasmcell.test/sleep:latest /sleep.wasm 2000) || fail "sleeper did not start"
    c2=$(run_container wasm1 "$pod" exit3 wasmcell.test/exit_code:latest /exit_code.wasm 3) || fail "exit3 did not start"
    code=$(cri wait "$c2") && [ "$code" = 3 ] || fail "exit3 exit code: $code"
    out=$(cri inspect "$c1")
    [[ "$out" == "state=CONTAINER_RUNNING"* ]] || fail "the sleeper should still run: $out"
    # Both containers ran in the pod's one VM: one VMM process, no other.
    [ "$(vmms)" = 1 ] || fail "$(vmms) VMM processes for one pod: $(pgrep -a -f 'wasmcell-vmm')"
    code=$(cri wait "$c1") && [ "$code" = 0 ] || fail "sleeper exit code: $code"
    out=$(cri inspect "$c2")
    [[ "$out" == "state=CONTAINER_EXITED exit_code=3 reason=Error"* ]] || fail "exit3 status: $out"
    out=$(cri logs "$c1" 2>&1)
    [ "$out" = "slept at least 2000 ms" ] || fail "sleeper's log: $out"
    out=$(cri logs "$c2" 2>/dev/null)
    [ "$out" = "exiting with 3" ] || fail "exit3's stdout log: $out"
    out=$(cri logs "$c2" 2>&1 >/dev/null)
    [ "$out" = "bye" ] || fail "exit3's stderr log: $out"
    # The pod's containers share the shim its sandbox started.
    shims=$(pgrep -c -f "containerd-shim-wasmcell-v1 -namespace k8s.io")
    [ "$shims" = 1 ] || fail "$shims serving shims for one pod"
    remove_pod "$pod" || fail "stopping/removing the pod failed"
    assert_clean "$BASELINE"
}
# A pod mixing a WASI 0.2 component and a preview 1 module: both log and exit with their codes
# (the component's `exit(7)` is `wasi:cli/exit` `exit(err)` in Rust's wasip2 std: 1, as in wasmtime).
t_pod_mixing_a_component_and_a_module() {
    local pod c1 c2 code out
    pod=$(run_pod mixed wasmcell) || fail "RunPodSandbox failed"
    c1=$(run_container mixed "$pod" component wasmcell.test/component-exit_code:latest /exit_code.wasm 7) ||
        fail "the component did not start"
    c2=$(run_container mixed "$pod" module wasmcell.test/sleep:latest /sleep.wasm 300) || fail "the module did not start"
    code=$(cri wait "$c1") && [ "$code" = 1 ] || fail "component exit code: $code"
    code=$(cri wait "$c2") && [ "$code" = 0 ] || fail "module exit code: $code"
    [ "$(vmms)" = 1 ] || fail "$(vmms) VMM processes for one pod"
    out=$(cri logs "$c1" 2>/dev/null)
    [ "$out" = "exiting with 7" ] || fail "component's stdout log: $out"
    out=$(cri logs "$c1" 2>&1 >/dev/null)
    [ "$out" = "bye" ] || fail "component's stderr log: $out"
    out=$(cri logs "$c2" 2>&1)
    [ "$out" = "slept at least 300 ms" ] || fail "module's log: $out"
    out=$(cri inspect "$c1")
    [[ "$out" == "state=CONTAINER_EXITED exit_code=1 reason=Error"* ]] || fail "component status: $out"
    remove_pod "$pod" || fail "stopping/removing the pod failed"
    assert_clean "$BASELINE"
}
# StopContainer stops one workload of a pod's VM; its neighbour runs on to its own end.
t_one_container_of_a_pod_is_stopped_alone() {
    local pod c1 c2 code out
    pod=$(run_pod stop1 wasmcell) || fail "RunPodSandbox failed"
    c1=$(run_container stop1 "$pod" spinner wasmcell.test/spin:latest) || fail "spinner did not start"
    c2=$(run_container stop1 "$pod" sleeper wasmcell.test/sleep:latest /sleep.wasm 1500) || fail "sleeper did not start"
    cri stop "$c1" --timeout-secs 5 || fail "StopContainer failed"
    out=$(cri inspect "$c1")
    [[ "$out" == "state=CONTAINER_EXITED exit_code=143 "* ]] || fail "spinner status: $out"
    [[ "$(cri inspect "$c2")" == "state=CONTAINER_RUNNING"* ]] || fail "the sleeper stopped too: $(cri inspect "$c2")"
    code=$(cri wait "$c2") && [ "$code" = 0 ] || fail "sleeper exit code: $code"
    [ "$(cri logs "$c2" 2>&1)" = "slept at least 1500 ms" ] || fail "sleeper's log: $(cri logs "$c2" 2>&1)"
    remove_pod "$pod" || fail "stopping/removing the pod failed"
    assert_clean "$BASELINE"
}
# Each container's memory limit is its workload's memory in the pod's VM.
t_memory_limits_size_each_workload() {
    local pod small big mib
    pod=$(run_pod mem1 wasmcell) || fail "RunPodSandbox failed"
    small=$(cri create "$pod" --pod-config "$DIR/pods/mem1.json" --name small --image wasmcell.test/grow:latest \
        --memory-limit $((64 << 20))) && cri start "$small" || fail "small did not start"
    big=$(cri create "$pod" --pod-config "$DIR/pods/mem1.json" --name big --image wasmcell.test/grow:latest \
        --memory-limit $((256 << 20))) && cri start "$big" || fail "big did not start"
    [ "$(cri wait "$small")" = 0 ] && [ "$(cri wait "$big")" = 0 ] || fail "a grow container failed"
    mib=$(cri logs "$small" 2>&1 | sed -n 's/^grew \([0-9]*\) MiB$/\1/p')
    [ -n "$mib" ] && [ "$mib" -ge 40 ] && [ "$mib" -lt 64 ] || fail "64 MiB limit: grew $mib MiB ($(cri logs "$small" 2>&1))"
    mib=$(cri logs "$big" 2>&1 | sed -n 's/^grew \([0-9]*\) MiB$/\1/p')
    [ -n "$mib" ] && [ "$mib" -ge 200 ] && [ "$mib" -lt 256 ] || fail "256 MiB limit: grew $mib MiB ($(cri logs "$big" 2>&1))"
    remove_pod "$pod" || fail "stopping/removing the pod failed"
    assert_clean "$BASELINE"
}
t_runc_pod_beside_a_wasm_pod() {
    local wpod rpod c code out
    wpod=$(run_pod hybrid-w wasmcell) || fail "wasmcell RunPodSandbox failed"
    rpod=$(run_pod hybrid-r "") || fail "runc RunPodSandbox failed"
    c=$(run_container hybrid-r "$rpod" native wasmcell.test/native:latest) || fail "runc container did not start"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "runc container exit code: $code"
    out=$(cri logs "$c" 2>&1)
    [ "$out" = "Hello from runc!" ] || fail "runc container's log: $out"
    [ "$(cri inspectp "$wpod")" = "state=SANDBOX_READY runtime_handler=wasmcell" ] || fail "wasmcell pod: $(cri inspectp "$wpod")"
    c=$(run_container hybrid-w "$wpod" hello wasmcell.test/hello:latest) || fail "wasm container did not start"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "wasm container exit code: $code"
    remove_pod "$rpod" || fail "removing the runc pod failed"
    remove_pod "$wpod" || fail "removing the wasmcell pod failed"
    assert_clean "$BASELINE"
}

# Networking: a wasmcell pod's component serves TCP on its pod IP; the host (the CNI bridge's
# gateway), a component in another wasmcell pod and a native client in a runc pod all reach it;
# and a component calls a native server in the runc pod.
t_pods_talk_over_their_pod_ips() {
    local server client rpod rip echo pong c code ip logs reply
    server=$(run_pod net-server wasmcell) || fail "server RunPodSandbox failed"
    echo=$(run_container net-server "$server" echo wasmcell.test/component-tcp_echo:latest \
        /tcp_echo.wasm 0.0.0.0:8080 3) || fail "the echo server did not start"
    ip=$(cri ip "$server") && [ -n "$ip" ] || fail "no pod IP"
    for _ in $(seq 100); do
        grep -q "listening on 8080" <<<"$(cri logs "$echo" 2>&1)" && break
        sleep 0.1
    done
    # From the host, through the bridge.
    exec 3<>"/dev/tcp/$ip/8080" || fail "the host cannot connect to $ip:8080"
    printf 'ping from the host\n' >&3
    read -r -t 10 reply <&3 || fail "no echo for the host"
    exec 3>&-
    [ "$reply" = "ping from the host" ] || fail "the host got: $reply"
    # From a component in another wasmcell pod.
    client=$(run_pod net-client wasmcell) || fail "client RunPodSandbox failed"
    c=$(run_container net-client "$client" client wasmcell.test/component-tcp_client:latest \
        /tcp_client.wasm "$ip:8080" "ping from wasmcell") || fail "the client did not start"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "client exit code: $code ($(cri logs "$c" 2>&1))"
    grep -q "^reply: ping from wasmcell$" <<<"$(cri logs "$c" 2>&1)" || fail "client log: $(cri logs "$c" 2>&1)"
    # From a native program in a runc pod.
    rpod=$(run_pod net-runc "") || fail "runc RunPodSandbox failed"
    c=$(run_container net-runc "$rpod" ping wasmcell.test/tcp-ping:latest /tcp_ping "$ip:8080") ||
        fail "the runc client did not start"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "runc client exit code: $code ($(cri logs "$c" 2>&1))"
    [ "$(cri logs "$c" 2>&1)" = "runc got: ping from runc" ] || fail "runc client log: $(cri logs "$c" 2>&1)"
    # And the other way: a component in a wasmcell pod calls a native server in the runc pod.
    rip=$(cri ip "$rpod") && [ -n "$rip" ] || fail "no pod IP for the runc pod"
    pong=$(run_container net-runc "$rpod" pong wasmcell.test/tcp-ping:latest /tcp_ping serve 9090) ||
        fail "the runc server did not start"
    for _ in $(seq 100); do
        grep -q "^listening" <<<"$(cri logs "$pong" 2>&1)" && break
        sleep 0.1
    done
    c=$(run_container net-client "$client" to-runc wasmcell.test/component-tcp_client:latest \
        /tcp_client.wasm "$rip:9090" "ping from wasmcell") || fail "the client of the runc pod did not start"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "client of runc exit code: $code ($(cri logs "$c" 2>&1))"
    grep -q "^reply: pong: ping from wasmcell$" <<<"$(cri logs "$c" 2>&1)" ||
        fail "client of runc log: $(cri logs "$c" 2>&1)"
    code=$(cri wait "$pong") && [ "$code" = 0 ] || fail "runc server exit code: $code ($(cri logs "$pong" 2>&1))"
    # The server saw its three connections end and exited by itself.
    code=$(cri wait "$echo") && [ "$code" = 0 ] || fail "echo server exit code: $code"
    logs=$(cri logs "$echo" 2>&1)
    grep -q "^echoed 51 bytes over 3 connections$" <<<"$logs" || fail "echo server log: $logs"
    remove_pod "$rpod" || fail "removing the runc pod failed"
    remove_pod "$client" || fail "removing the client pod failed"
    remove_pod "$server" || fail "removing the server pod failed"
    assert_clean "$BASELINE"
}
# GET PATH from IP:PORT over a fresh connection (bash's /dev/tcp, as a kubelet probe would) →
# the whole response.
http_get() {
    exec 3<>"/dev/tcp/$1/$2" || return 1
    printf 'GET %s HTTP/1.1\r\nhost: %s\r\nconnection: close\r\n\r\n' "$3" "$1" >&3
    timeout 10 cat <&3
    exec 3>&-
}
# wasi:http in a pod: an image with WASMCELL_HTTP_ADDR=8080 is served (`wasmcell serve` in the
# pod's VM); the host reaches it on the pod IP, as a kubelet's probe or a Service would, and a
# component in another wasmcell pod calls it with wasi:http/outgoing-handler; a second
# container of the pod serving the same port fails saying so (as on Linux); removing the pod
# frees the address.
t_a_pod_serves_wasi_http() {
    local pod web dup client c ip cip response code
    pod=$(run_pod http wasmcell) || fail "RunPodSandbox failed"
    web=$(run_container http "$pod" web wasmcell.test/http-hello:latest) || fail "the web container did not start"
    ip=$(cri ip "$pod") && [ -n "$ip" ] || fail "no pod IP"
    for _ in $(seq 100); do
        grep -q "Serving HTTP on http://0.0.0.0:8080/" <<<"$(cri logs "$web" 2>&1)" && break
        sleep 0.1
    done
    response=$(http_get "$ip" 8080 /) || fail "the host cannot connect to $ip:8080"
    [[ "$response" == "HTTP/1.1 200 OK"* ]] || fail "the host got: $response"
    grep -q "^hello from wasi:http" <<<"$response" || fail "the host got: $response"
    response=$(http_get "$ip" 8080 /env) || fail "no answer to /env"
    ! grep -q "WASMCELL_HTTP_ADDR" <<<"$response" || fail "the variable reached the workload: $response"
    # A component in another wasmcell pod calls this one (wasi:http/outgoing-handler) on its pod IP.
    client=$(run_pod http-client wasmcell) || fail "client RunPodSandbox failed"
    c=$(run_container http-client "$client" caller wasmcell.test/http-hello:latest) || fail "the caller did not start"
    cip=$(cri ip "$client") && [ -n "$cip" ] || fail "no pod IP for the caller"
    for _ in $(seq 100); do
        grep -q "Serving HTTP" <<<"$(cri logs "$c" 2>&1)" && break
        sleep 0.1
    done
    response=$(http_get "$cip" 8080 "/fetch?http://$ip:8080/status/202") || fail "the caller does not answer"
    grep -q "^202" <<<"$response" || fail "the caller got: $response"
    remove_pod "$client" || fail "removing the client pod failed"
    dup=$(run_container http "$pod" dup wasmcell.test/http-hello:latest) || fail "the second container did not start"
    code=$(cri wait "$dup") && [ "$code" != 0 ] || fail "the second server on port 8080 exited $code"
    grep -q "cannot serve on 0.0.0.0:8080: the address is in use" <<<"$(cri logs "$dup" 2>&1)" ||
        fail "the second server's log: $(cri logs "$dup" 2>&1)"
    [[ "$(http_get "$ip" 8080 /)" == "HTTP/1.1 200 OK"* ]] || fail "the first server stopped serving"
    remove_pod "$pod" || fail "removing the pod failed"
    ! timeout 2 bash -c "exec 3<>/dev/tcp/$ip/8080" 2>/dev/null || fail "$ip:8080 still answers after the pod is gone"
    assert_clean "$BASELINE"
}
# A preview-1 server in a pod: WASMCELL_TCP_LISTEN=7000 in its image hands it a listener on the
# pod's port 7000 (descriptor 3, `sock_accept`); the host and a runc pod are echoed, then it
# ends on its own, freeing the port.
t_a_preview1_server_in_a_pod_answers_on_its_preopened_listener() {
    local pod c rpod ping ip code echoed
    pod=$(run_pod p1 wasmcell) || fail "RunPodSandbox failed"
    c=$(run_container p1 "$pod" server wasmcell.test/p1-server:latest /p1_server.wasm echo 2) ||
        fail "the server did not start"
    ip=$(cri ip "$pod") && [ -n "$ip" ] || fail "no pod IP"
    for _ in $(seq 100); do
        grep -q "^ready" <<<"$(cri logs "$c" 2>&1)" && break
        sleep 0.1
    done
    echoed=$(timeout 10 bash -c "exec 3<>/dev/tcp/$ip/7000 && printf hi >&3 && read -r -n 2 reply <&3 && echo \"\$reply\"") ||
        fail "the host got no echo from $ip:7000 (log: $(cri logs "$c" 2>&1))"
    [ "$echoed" = hi ] || fail "the host got: $echoed"
    rpod=$(run_pod p1-runc "") || fail "runc RunPodSandbox failed"
    ping=$(run_container p1-runc "$rpod" ping wasmcell.test/tcp-ping:latest /tcp_ping "$ip:7000") ||
        fail "the runc client did not start"
    code=$(cri wait "$ping") && [ "$code" = 0 ] || fail "runc client exit code: $code ($(cri logs "$ping" 2>&1))"
    [ "$(cri logs "$ping" 2>&1)" = "runc got: ping from runc" ] || fail "runc client log: $(cri logs "$ping" 2>&1)"
    remove_pod "$rpod" || fail "removing the runc pod failed"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "the server exited $code ($(cri logs "$c" 2>&1))"
    grep -q "^served 2" <<<"$(cri logs "$c" 2>&1)" || fail "the server's log: $(cri logs "$c" 2>&1)"
    ! timeout 2 bash -c "exec 3<>/dev/tcp/$ip/7000" 2>/dev/null || fail "$ip:7000 still answers after the server ended"
    remove_pod "$pod" || fail "removing the pod failed"
    assert_clean "$BASELINE"
}
# Read-only volumes as the kubelet mounts a configMap (files as symlinks into a timestamped
# directory) and a service-account token: the workload reads them at their destinations; a
# symlink out of the volume does not lead to the host; a writable mount is not served yet and
# starts nothing.
t_read_only_volumes_reach_the_workload() {
    local pod c v code logs
    v=$DIR/volumes
    mkdir -p "$v/config/..2026_12_03" "$v/token" "$v/scratch"
    printf 'replicas: 3\n' >"$v/config/..2026_12_03/app.yaml"
    ln -sfn ..2026_12_03/app.yaml "$v/config/app.yaml"
    ln -sfn /etc/shadow "$v/config/escape"
    printf 's3cr3t' >"$v/token/token"
    pod=$(run_pod vol wasmcell) || fail "RunPodSandbox failed"
    c=$(cri create "$pod" --pod-config "$DIR/pods/vol.json" --name reader --image wasmcell.test/read_paths:latest \
        --mount "$v/config:/etc/config:ro" --mount "$v/token:/var/run/secrets/kubernetes.io/serviceaccount:ro" \
        --mount "$v/scratch:/scratch" -- /read_paths.wasm /etc/config/app.yaml \
        /var/run/secrets/kubernetes.io/serviceaccount/token /etc/config/escape) || fail "CreateContainer failed"
    cri start "$c" || fail "StartContainer failed"
    code=$(cri wait "$c") && [ "$code" = 0 ] || fail "reader exit code: $code ($(cri logs "$c" 2>&1))"
    logs=$(cri logs "$c" 2>&1)
    grep -qx "/etc/config/app.yaml: 12 bytes" <<<"$logs" || fail "reader log: $logs"
    grep -qx "/var/run/secrets/kubernetes.io/serviceaccount/token: 6 bytes" <<<"$logs" || fail "reader log: $logs"
    grep -q "^/etc/config/escape: error: " <<<"$logs" || fail "the symlink out of the volume was followed: $logs"
    remove_pod "$pod" || fail "removing the pod failed"
    assert_clean "$BASELINE"
}
# Writable volumes, as the kubelet passes them: an emptyDir (mode 0777, as the kubelet makes
# it) shared by a module and a component of one pod while both run, a hostPath a job writes
# and the node keeps, and the termination log the kubelet reads after a failed exit; and the
# sandbox's /etc/hosts and /etc/resolv.conf, which containerd mounts, are what the workload reads.
t_writable_volumes_reach_the_host() {
    local v pod reader writer job failing files code logs term hosts resolv
    v=$DIR/writable
    mkdir -p "$v/empty" "$v/host"
    chmod 0777 "$v/empty"
    # A hostPath (or a PVC) prepared for the pod's fsGroup, 4242: writable by that group only.
    # The VMM writes as nobody with the pod's groups.
    chown 0:4242 "$v/host"
    chmod 0770 "$v/host"
    : >"$v/termination-log"
    pod=$(cri runp --name rw --runtime wasmcell --log-dir "$DIR/pods/rw" --save "$DIR/pods/rw.json" \
        --supplemental-group 4242) || fail "RunPodSandbox failed"
    reader=$(cri create "$pod" --pod-config "$DIR/pods/rw.json" --name reader --image wasmcell.test/volume_ops:latest \
        --mount "$v/empty:/cache" -- /volume_ops.wasm wait /cache/message 60) || fail "CreateContainer (reader) failed"
    cri start "$reader" || fail "StartContainer (reader) failed"
    writer=$(cri create "$pod" --pod-config "$DIR/pods/rw.json" --name writer \
        --image wasmcell.test/component-volume_ops:latest --mount "$v/empty:/cache" -- \
        /volume_ops.wasm write /cache/message "from the writer") || fail "CreateContainer (writer) failed"
    cri start "$writer" || fail "StartContainer (writer) failed"
    code=$(cri wait "$writer") && [ "$code" = 0 ] || fail "writer exit code: $code ($(cri logs "$writer" 2>&1))"
    code=$(cri wait "$reader") && [ "$code" = 0 ] || fail "reader exit code: $code ($(cri logs "$reader" 2>&1))"
    logs=$(cri logs "$reader" 2>&1)
    [ "$logs" = "wait /cache/message: from the writer" ] || fail "the reader did not see the write: $logs"
    job=$(cri create "$pod" --pod-config "$DIR/pods/rw.json" --name job2 --image wasmcell.test/volume_ops:latest \
        --mount "$v/host:/out" -- /volume_ops.wasm mkdir /out/results write /out/results/summary.txt "42 rows") ||
        fail "CreateContainer (job) failed"
    cri start "$job" || fail "StartContainer (job) failed"
    code=$(cri wait "$job") && [ "$code" = 0 ] || fail "job exit code: $code ($(cri logs "$job" 2>&1))"
    failing=$(cri create "$pod" --pod-config "$DIR/pods/rw.json" --name failing --image wasmcell.test/volume_ops:latest \
        --mount "$v/termination-log:/dev/termination-log" -- /volume_ops.wasm read /etc/hosts read /etc/resolv.conf \
        write /dev/termination-log "config.yaml is missing" exit 1) || fail "CreateContainer (failing) failed"
    cri start "$failing" || fail "StartContainer (failing) failed"
    code=$(cri wait "$failing") && [ "$code" = 1 ] || fail "failing exit code: $code ($(cri logs "$failing" 2>&1))"
    # What the kubelet does: read the host file of the mount at terminationMessagePath.
    term=$(cri mount "$failing" /dev/termination-log) || fail "no termination-log mount in ContainerStatus"
    [ "$(cat "$term")" = "config.yaml is missing" ] || fail "termination message: '$(cat "$term")'"
    # containerd mounts the sandbox's own files (the kubelet passes none here).
    hosts=$DIR/containerd/root/io.containerd.grpc.v1.cri/sandboxes/$pod/hosts
    resolv=$DIR/containerd/root/io.containerd.grpc.v1.cri/sandboxes/$pod/resolv.conf
    [ -f "$hosts" ] && [ -f "$resolv" ] || fail "no sandbox hosts or resolv.conf: $(ls "${hosts%/*}" 2>&1)"
    files=$(printf 'read /etc/hosts: %s\nread /etc/resolv.conf: %s\nwrite /dev/termination-log: ok\n' \
        "$(cat "$hosts")" "$(cat "$resolv")")
    logs=$(cri logs "$failing" 2>&1)
    [ "$logs" = "$files" ] || fail "the workload's /etc/hosts and /etc/resolv.conf are not the sandbox's: $logs"
    remove_pod "$pod" || fail "removing the pod failed"
    [ "$(cat "$v/host/results/summary.txt")" = "42 rows" ] || fail "the job's output is not on the host"
    assert_clean "$BASELINE"
}
# containerd's CRI creates the task (the first call that reaches a runtime) in StartContainer,
# not CreateContainer: the refusal comes there, and must name the reason.
t_non_wasm_container_is_refused() {
    local pod c out
    pod=$(run_pod refuse wasmcell) || fail "RunPodSandbox failed"
    c=$(cri create "$pod" --pod-config "$DIR/pods/refuse.json" --name native --image wasmcell.test/native:latest) ||
        fail "CreateContainer failed"
    if out=$(timeout 5 "$REPO/target/release/wasmcell-cri" --socket "$CTR_SOCK" start "$c" 2>&1); then
        remove_pod "$pod"
        fail "StartContainer accepted a native image"
    fi
    remove_pod "$pod" || fail "removing the pod failed"
    grep -q "/hello_native is not a WebAssembly module" <<<"$out" || fail "the error does not name the reason: $out"
    assert_clean "$BASELINE"
}
t_twenty_pods_in_sequence() {
    local i
    for i in $(seq 20); do
        wasm_pod_cycle "seq$i" || fail "pod seq$i failed"
    done
    assert_clean "$BASELINE"
}
t_ten_pods_in_parallel() {
    local i pids=() failed=0
    for i in $(seq 10); do
        (wasm_pod_cycle "par$i") >"$DIR/par$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { failed=1; echo "pod par$((i + 1)): $(cat "$DIR/par$((i + 1)).log")"; }
    done
    [ $failed = 0 ] || fail "some parallel pods failed"
    assert_clean "$BASELINE"
}

# An idle pod costs no CPU: a container that logged and then sleeps keeps its VMM asleep, and
# the pod's shim does not wake at all (it used to poll containerd's event connection 100 times a
# second). 2 s measured; a poller would show hundreds of switches, a spinning vCPU 200 ticks.
t_idle_pod_costs_nothing() {
    local pod c shim vmm t0 s0 v0 t1 s1 v1
    pod=$(run_pod idle1 wasmcell) || fail "RunPodSandbox failed"
    c=$(run_container idle1 "$pod" logger wasmcell.test/log_then_sleep:latest /log_then_sleep.wasm 60000) ||
        fail "logger did not start"
    for _ in $(seq 50); do [ "$(cri logs "$c" 2>&1)" = "sleeping 60000 ms" ] && break; sleep 0.1; done
    [ "$(cri logs "$c" 2>&1)" = "sleeping 60000 ms" ] || fail "logger's log: $(cri logs "$c" 2>&1)"
    shim=$(pgrep -f "containerd-shim-wasmcell-v1 -namespace k8s.io -id $pod") || fail "no shim for the pod"
    vmm=$(pgrep -f "wasmcell-vmm .*$pod") || fail "no VMM for the pod"
    sleep 0.5
    t0=$(cpu_ticks "$vmm") s0=$(switches "$shim") v0=$(switches "$vmm")
    sleep 2
    t1=$(cpu_ticks "$vmm") s1=$(switches "$shim") v1=$(switches "$vmm")
    [ $((t1 - t0)) -le 10 ] || fail "the VMM of a sleeping workload used $((t1 - t0)) ticks in 2 s"
    [ $((v1 - v0)) -lt 20 ] || fail "the VMM of a sleeping workload woke $((v1 - v0)) times in 2 s"
    [ $((s1 - s0)) -lt 20 ] || fail "the idle pod's shim woke $((s1 - s0)) times in 2 s"
    remove_pod "$pod" || fail "stopping/removing the pod failed"
    assert_clean "$BASELINE"
}

# CRI asks -998 for a sandbox and containerd here restricts it to its own score (0), which the
# VMM would inherit anyway, so the VMM's own score proves nothing here: this checks that the
# spec's value reaches the VMM's plan (null if it did not); that the VMM applies the plan's is
# `shim/containerd/tests/pod_vmm.rs`'s (a score of 654).
t_pod_vmm_jailed_with_its_oom_score() {
    local pod c vmm plan want got
    pod=$(run_pod jail1 wasmcell) || fail "RunPodSandbox failed"
    c=$(run_container jail1 "$pod" sleeper wasmcell.test/sleep:latest /sleep.wasm 60000) || fail "sleeper did not start"
    vmm=$(pgrep -f "wasmcell-vmm .*$pod") || fail "no VMM for the pod"
    assert_jailed "$vmm"
    [ -z "$(ls -A "/proc/$vmm/root/")" ] || fail "its root is not the empty jail"
    plan=$(tr '\0' '\n' <"/proc/$vmm/cmdline" | tail -n 1)
    want=$(grep -o '"oomScoreAdj": *-\?[0-9]*' "$(dirname "$plan")/config.json" | grep -o -- '-\?[0-9]*$')
    got=$(grep -o '"oom_score_adj":[^,}]*' "$plan" | cut -d: -f2)
    # The sandbox's spec carries the pause container's CPU shares (2): not the pod VM's.
    local shares
    shares=$(cat "/sys/fs/cgroup/cpu$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3 }' "/proc/$vmm/cgroup")/cpu.shares")
    remove_pod "$pod" || fail "stopping/removing the pod failed"
    [ "$shares" != 2 ] || fail "the pod's VM got the pause container's CPU shares (2)"
    [ -n "$want" ] || fail "the sandbox's spec sets no oomScoreAdj"
    [ "$got" = "$want" ] || fail "the VMM's plan says oom_score_adj $got, the sandbox's spec $want"
    assert_clean "$BASELINE"
}

check "a pod's VMM is jailed (nobody, no capabilities, seccomp, empty root), is planned with the sandbox's oomScoreAdj, not its pause CPU shares" t_pod_vmm_jailed_with_its_oom_score
check "a wasmcell pod: two Wasm containers in one VM log and exit 0 and 3, one shim" t_wasm_pod_with_two_containers
check "a pod mixing a WASI 0.2 component and a preview 1 module: both log and exit with their statuses (1, 0)" t_pod_mixing_a_component_and_a_module
check "StopContainer stops one workload of a pod's VM, not its neighbour" t_one_container_of_a_pod_is_stopped_alone
check "each container's memory limit sizes its workload in the pod's VM" t_memory_limits_size_each_workload
check "hybrid node: a runc pod runs beside a wasmcell pod" t_runc_pod_beside_a_wasm_pod
check "pods talk over their pod IPs: a component serving TCP in a wasmcell pod answers the host, a component in another wasmcell pod and a runc pod; a component calls a runc pod's server" t_pods_talk_over_their_pod_ips
check "a pod serves a wasi:http component (WASMCELL_HTTP_ADDR) on its pod IP to the host and to another pod's outgoing request; a second server on the port fails saying so" t_a_pod_serves_wasi_http
check "a preview-1 server in a pod (WASMCELL_TCP_LISTEN) answers the host and a runc pod on its preopened listener" t_a_preview1_server_in_a_pod_answers_on_its_preopened_listener
check "read-only volumes (a configMap's layout, a token) reach the workload at their destinations; a symlink out of one does not" t_read_only_volumes_reach_the_workload
check "writable volumes: an emptyDir shared while both run, a hostPath of the pod's fsGroup kept, the termination message; /etc/hosts and resolv.conf are the sandbox's" t_writable_volumes_reach_the_host
check "a non-Wasm container in a wasmcell pod is refused naming the reason (StartContainer)" t_non_wasm_container_is_refused
check "an idle pod costs no CPU: a workload that logged then sleeps, and its shim, stay asleep" t_idle_pod_costs_nothing
check "20 wasmcell pods in sequence leave nothing behind" t_twenty_pods_in_sequence
check "10 wasmcell pods in parallel leave nothing behind" t_ten_pods_in_parallel
echo "== end: $(footprint)"
summary
