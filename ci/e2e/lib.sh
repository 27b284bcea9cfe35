# Shared helpers of the end-to-end scripts: a private containerd (its own root, state and
# sockets under a temp dir, the wasmcell runtime registered), checks that count, and cleanup by
# PID. Sourced, not run.

E2E_PASSED=0
E2E_FAILED=0
E2E_FAILURES=()

# check NAME CMD... — runs CMD; counts and reports the result.
check() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        E2E_PASSED=$((E2E_PASSED + 1))
        echo "ok    $name"
    else
        E2E_FAILED=$((E2E_FAILED + 1))
        E2E_FAILURES+=("$name")
        echo "FAIL  $name"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/      /'
    fi
}

# fail MESSAGE — inside a check (which runs in a subshell): report why and end the check.
fail() {
    echo "$*" >&2
    exit 1
}

# assert_jailed PID — inside a check: every thread of PID is the jailed VMM's: uid and gid
# 65534, no groups, no capabilities at all, no_new_privs, a seccomp filter.
assert_jailed() {
    local task bad=""
    for task in /proc/"$1"/task/*; do
        awk '
            $1 == "Uid:" || $1 == "Gid:" { if ($2 != 65534 || $3 != 65534 || $4 != 65534 || $5 != 65534) bad = bad " " $0 }
            $1 == "Groups:" { if (NF != 1) bad = bad " " $0 }
            $1 ~ /^Cap(Inh|Prm|Eff|Bnd|Amb):$/ { if ($2 != "0000000000000000") bad = bad " " $0 }
            $1 == "NoNewPrivs:" { if ($2 != 1) bad = bad " " $0 }
            $1 == "Seccomp:" { if ($2 != 2) bad = bad " " $0 }
            END { if (bad != "") { print FILENAME ":" bad; exit 1 } }' "$task/status" || bad="$bad $task"
    done
    [ -z "$bad" ] || fail "not jailed: $bad"
}

# assert_clean BASELINE — inside a check: the script's `footprint` is back to BASELINE.
assert_clean() {
    # containerd finishes some cleanup after the call that caused it returns (the shim's exit,
    # the delete action, closing its connection): give it 5 s to settle.
    local now deadline=$((SECONDS + 5))
    while now=$(footprint) && [ "$now" != "$1" ]; do
        [ $SECONDS -le $deadline ] || fail "left behind: before [$1], after [$now]"
        sleep 0.1
    done
}

# Benchmark helpers: wall-clock nanoseconds, milliseconds between two of them, and the
# "p25 median p75" of a file of numbers.
now_ns() { date +%s%N; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }'; }
quartiles() {
    sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.1f %.1f %.1f", v[int((NR + 3) / 4)], v[int((NR + 1) / 2)], v[int((3 * NR + 3) / 4)] }'
}

# compare LABEL_A FILE_A LABEL_B FILE_B — both sides' quartiles (ms) and the ratio of medians.
compare() {
    local a25 a50 a75 b25 b50 b75
    read -r a25 a50 a75 <<<"$(quartiles "$2")"
    read -r b25 b50 b75 <<<"$(quartiles "$4")"
    printf '  %-30s %s / %s / %s\n' "$1:" "$a25" "$a50" "$a75"
    printf '  %-30s %s / %s / %s\n' "$3:" "$b25" "$b50" "$b75"
    echo "  ratio of medians: $(awk -v a="$a50" -v b="$b50" 'BEGIN { printf "%.2f", a / b }')x"
}

summary() {
    echo "== $E2E_PASSED passed, $E2E_FAILED failed"
    for f in "${E2E_FAILURES[@]}"; do echo "   failed: $f"; done
    [ "$E2E_FAILED" -eq 0 ]
}

# e2e_workdir PREFIX — a fresh $DIR under /tmp, removed on exit with whatever a failed check
# left under it (containerd, shims and VMMs by their command lines, mounts); $DIR/bin holds the
# shim; compiled modules are cached in $DIR/cache.
e2e_workdir() {
    DIR=$(mktemp -d "/tmp/$1.XXXXXX")
    trap e2e_cleanup EXIT
    mkdir -p "$DIR/bin"
    export WASMCELL_CACHE_DIR=$DIR/cache
}
e2e_cleanup() {
    # Runs under `set -e` in the benchmarks: no step may stop the ones after it.
    stop_containerd
    pkill -9 -f "$DIR" 2>/dev/null || true
    grep -o "$DIR[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$DIR"
}

# native_image REFERENCE SOURCE.rs TAR — a static native binary built from SOURCE, packed as a
# linux/amd64 image whose entrypoint it is (for runc). Needs $REPO and $DIR.
native_image() {
    local binary
    binary=$DIR/$(basename "$2" .rs)
    rustc -O -C target-feature=+crt-static -o "$binary" "$2" &&
        "$REPO/target/release/examples/pack" "$1" "$binary" "$3"
}

# install_packages PKG... — from Debian, only when missing.
install_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# start_containerd DIR SHIM_DIR — a containerd whose root, state, sockets and config live under
# DIR, with the shim installed by `wasmcell install` into SHIM_DIR, first on its PATH (containerd
# finds shims on its own PATH only). Needs $REPO.
start_containerd() {
    local dir=$1 shim_dir=$2
    mkdir -p "$dir"/{root,state,cni/conf}
    CTR_SOCK=$dir/containerd.sock
    # Pods with their own network namespace: a bridge with host-local addresses.
    cat >"$dir/cni/conf/10-wasmcell-e2e.conflist" <<'JSON'
{"cniVersion": "0.4.0", "name": "wasmcell-e2e", "plugins": [
  {"type": "bridge", "bridge": "wcell-e2e0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.251.0.0/16"}]]}}]}
JSON
    cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$dir/containerd.ttrpc.sock"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  # A local image (e2e scripts import it); nothing is pulled.
  sandbox_image = "wasmcell.test/pause:latest"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/conf"
TOML
    # The wasmcell handler and the shim, as an operator installs them.
    "$REPO/target/release/wasmcell" install --config "$dir/config.toml" --bin-dir "$shim_dir" >"$dir/runtimeclass.yaml" 2>/dev/null ||
        { echo "wasmcell install failed" >&2; return 1; }
    PATH="$shim_dir:$PATH" containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
    CONTAINERD_PID=$!
    for _ in $(seq 100); do
        ctr --address "$CTR_SOCK" version >/dev/null 2>&1 && return 0
        kill -0 "$CONTAINERD_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "containerd did not start; its log:" >&2
    tail -n 30 "$dir/containerd.log" >&2
    return 1
}

# stop_containerd — stops containerd and any shim it left, by PID.
stop_containerd() {
    [ -n "${CONTAINERD_PID:-}" ] || return 0
    kill "$CONTAINERD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$CONTAINERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$CONTAINERD_PID" 2>/dev/null || true
    wait "$CONTAINERD_PID" 2>/dev/null || true
    CONTAINERD_PID=
}
