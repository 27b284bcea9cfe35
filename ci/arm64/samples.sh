#!/usr/bin/env bash
# Builds the payload of the emulated-arm64 stage's `wasmcell run` check (ci/arm64/test.sh): every
# case of ci/arm64/cases.txt and every client/server pair of ci/arm64/pairs.txt, precompiled for aarch64 on this x86-64 machine, with what x86-64's
# `wasmcell run` answers for it (stdout, stderr, status) as the expected result, the arm64
# `wasmcell` binary, and a run.sh that runs each case in the arm64 VM and compares.
#
# Both sides run the same way: a precompiled artifact named cases/ID.cwasm (so even argv[0] is
# the same), from a directory holding the same file fixture (data/ for `--dir`, vol/ for
# `--volume`, outside.txt). Cases marked `native` also run from cases/ID.wasm (or .wat): compiled by the arm64 node's own compiler
# process, under its jail and seccomp filter.
#
# Usage: ci/arm64/samples.sh HOST_WASMCELL ARM64_WASMCELL PAYLOAD_DIR
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 HOST_WASMCELL ARM64_WASMCELL PAYLOAD_DIR" >&2; exit 2; }
host=$(realpath "$1")
arm=$(realpath "$2")
out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
samples=$root/target/images/wasm32-wasip1/release
components=$root/target/images/wasm32-wasip2/release
modules=$root/cli/tests/modules

# The file samples' fixture (as cli/tests/common.rs's, without the absolute symlink, whose
# target would differ between the two machines).
fixture() {
    mkdir -p "$1/data/sub"
    printf 'secret\n' >"$1/outside.txt"
    printf 'hello world\n' >"$1/data/hello.txt"
    printf 'nested\n' >"$1/data/sub/nested.txt"
    head -c $((1 << 20)) /dev/urandom >"$1/data/big.bin"
    ln -sf hello.txt "$1/data/link_to_hello"
    ln -sf ../outside.txt "$1/data/out_link"
    # A write-through volume's directory (the `--volume` cases change it, in the same order on
    # both machines).
    mkdir -p "$1/vol"
    printf 'hello world\n' >"$1/vol/hello.txt"
    # file_io's: a blob it reads whole, a small file it opens N times.
    mkdir -p "$1/io"
    head -c $((1 << 20)) /dev/zero >"$1/io/blob"
    printf 'small\n' >"$1/io/small.txt"
}

x86=$(mktemp -d "${TMPDIR:-/tmp}/wasmcell-arm64-samples.XXXXXX")
trap 'rm -rf "$x86"' EXIT
mkdir -p "$out/cases" "$out/expected" "$x86/cases"
fixture "$out"
fixture "$x86"
cp "$out/data/big.bin" "$x86/data/big.bin"
cp "$arm" "$out/wasmcell"

# A client/server pair, run the same way on both machines (POSIX sh: the arm64 VM has busybox).
cat >"$out/pair.sh" <<'SCRIPT'
# pair WASMCELL ID SERVER_FLAGS SERVER_ARGS CLIENT_FLAGS CLIENT_ARGS OUT: runs cases/ID.server.cwasm
# in the background, waits (bounded) until it printed a line, runs cases/ID.client.cwasm, waits
# for the server (its flags bound it with --timeout); leaves OUT/ID.{server,client}.{out,err,status}.
pair() {
    w=$1 id=$2 sflags=$3 sargs=$4 cflags=$5 cargs=$6 out=$7
    # shellcheck disable=SC2086 # flags and args are space-separated words
    "$w" run --cache-dir "$PWD/cache" --allow-precompiled $sflags "cases/$id.server.cwasm" -- $sargs \
        >"$out/$id.server.out" 2>"$out/$id.server.err" </dev/null &
    server=$!
    tries=0
    while [ ! -s "$out/$id.server.out" ] && [ $tries -lt 1200 ] && kill -0 $server 2>/dev/null; do
        sleep 0.1
        tries=$((tries + 1))
    done
    status=0
    # shellcheck disable=SC2086 # as above
    "$w" run --cache-dir "$PWD/cache" --allow-precompiled $cflags "cases/$id.client.cwasm" -- $cargs \
        >"$out/$id.client.out" 2>"$out/$id.client.err" </dev/null || status=$?
    echo "$status" >"$out/$id.client.status"
    status=0
    wait $server || status=$?
    echo "$status" >"$out/$id.server.status"
}
SCRIPT

cat >"$out/run.sh" <<'SCRIPT'
#!/bin/sh
# Runs every case and compares it with x86-64's answer; exits 1 if any differs.
export HOME=/tmp
failed=0
. ./pair.sh
check() { # ID FILE FLAGS ARGS STDIN
    id=$1 file=$2 flags=$3 args=$4 stdin=$5 extra=
    case $file in *.cwasm) extra=--allow-precompiled ;; esac
    status=0
    # shellcheck disable=SC2086 # flags and args are space-separated words
    printf '%s' "$stdin" | ./wasmcell run --cache-dir /tmp/cache $extra $flags "cases/$file" -- $args \
        >/tmp/got.out 2>/tmp/got.err || status=$?
    expected=$(cat "expected/$id.status")
    if [ "$status" = "$expected" ] && cmp -s "expected/$id.out" /tmp/got.out && cmp -s "expected/$id.err" /tmp/got.err; then
        echo "ok     $id ($file, status $status)"
    else
        echo "FAILED $id ($file): status $status, x86-64 $expected"
        diff "expected/$id.out" /tmp/got.out | head -20
        diff "expected/$id.err" /tmp/got.err | head -20
        failed=1
    fi
}
check_pair() { # ID SERVER_FLAGS SERVER_ARGS CLIENT_FLAGS CLIENT_ARGS
    mkdir -p /tmp/pairs
    pair ./wasmcell "$1" "$2" "$3" "$4" "$5" /tmp/pairs
    same=true
    for f in server.out server.err server.status client.out client.err client.status; do
        cmp -s "expected/$1.$f" "/tmp/pairs/$1.$f" || same=false
    done
    if $same; then
        echo "ok     $1 (server and client, statuses $(cat "/tmp/pairs/$1.server.status") $(cat "/tmp/pairs/$1.client.status"))"
    else
        echo "FAILED $1 (server and client)"
        for f in server.out server.err server.status client.out client.err client.status; do
            diff "expected/$1.$f" "/tmp/pairs/$1.$f" | head -10
        done
        failed=1
    fi
}
SCRIPT

# A module's file, as cases.txt and pairs.txt name it.
source_of() {
    case $1 in
        *.wat) echo "$modules/$1" ;;
        p2:*) echo "$components/${1#p2:}.wasm" ;;
        *) echo "$samples/$1.wasm" ;;
    esac
}

count=0
while IFS='|' read -r id module flags args stdin; do
    case $id in '' | '#'*) continue ;; esac
    src=$(source_of "$module")
    [ -f "$src" ] || { echo "$0: $src is missing (images/build.sh builds the samples)" >&2; exit 1; }
    native=false
    run_flags=()
    for flag in $flags; do
        if [ "$flag" = native ]; then native=true; else run_flags+=("$flag"); fi
    done
    "$host" compile -o "$x86/cases/$id.cwasm" "$src"
    "$host" compile --target aarch64 -o "$out/cases/$id.cwasm" "$src"
    status=0
    # shellcheck disable=SC2086 # args are space-separated words
    (cd "$x86" && printf '%s' "$stdin" | "$host" run --cache-dir "$x86/cache" --allow-precompiled \
        "${run_flags[@]}" "cases/$id.cwasm" -- $args >"$out/expected/$id.out" 2>"$out/expected/$id.err") || status=$?
    echo "$status" >"$out/expected/$id.status"
    echo "check '$id' '$id.cwasm' '${run_flags[*]}' '$args' '$stdin'" >>"$out/run.sh"
    if $native; then
        cp "$src" "$out/cases/$id.${src##*.}"
        echo "check '$id' '$id.${src##*.}' '${run_flags[*]}' '$args' '$stdin'" >>"$out/run.sh"
    fi
    count=$((count + 1))
done <"$root/ci/arm64/cases.txt"

# shellcheck source=/dev/null # written above
. "$out/pair.sh"
while IFS='|' read -r id server sflags sargs client cflags cargs; do
    case $id in '' | '#'*) continue ;; esac
    for side in server client; do
        if [ $side = server ]; then src=$(source_of "$server"); else src=$(source_of "$client"); fi
        [ -f "$src" ] || { echo "$0: $src is missing (images/build.sh builds the samples)" >&2; exit 1; }
        "$host" compile -o "$x86/cases/$id.$side.cwasm" "$src"
        "$host" compile --target aarch64 -o "$out/cases/$id.$side.cwasm" "$src"
    done
    (cd "$x86" && pair "$host" "$id" "$sflags" "$sargs" "$cflags" "$cargs" "$out/expected")
    for f in server.status client.status; do
        [ "$(cat "$out/expected/$id.$f")" = 0 ] || { echo "$0: $id's $f on x86-64 is not 0" >&2; exit 1; }
    done
    echo "check_pair '$id' '$sflags' '$sargs' '$cflags' '$cargs'" >>"$out/run.sh"
    count=$((count + 1))
done <"$root/ci/arm64/pairs.txt"
# shellcheck disable=SC2016 # expanded by run.sh, not here
echo 'exit $failed' >>"$out/run.sh"
chmod 0755 "$out/run.sh"
echo "ci/arm64/samples.sh: $count cases, expected results from x86-64 in $out/expected"
