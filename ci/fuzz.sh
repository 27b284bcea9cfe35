#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target in fuzz/ (nightly) and runs each for a short,
# fixed time; any crash fails the run. WASMCELL_FUZZ_SECONDS sets the time per target (default
# 20). docs/security.md says how to run one for long. Needs the guest built first (ci/test.sh's
# cargo build does it): the fuzz build reuses it instead of building it with nightly.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${WASMCELL_FUZZ_SECONDS:-20}

# A nightly toolchain: the machine's if it has one, else a pinned one.
if rustup run nightly rustc --version >/dev/null 2>&1; then
    NIGHTLY=nightly
else
    NIGHTLY=nightly-2026-05-19
    rustup toolchain install "$NIGHTLY" --profile minimal >/dev/null
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
fi

GUEST=$PWD/target/guest/x86_64-unknown-none/release/wasmcell-guest
[ -f "$GUEST" ] || { echo "ci/fuzz.sh: build the guest first (cargo build --release -p wasmcell)" >&2; exit 1; }
export WASMCELL_GUEST_ELF=$GUEST

cd fuzz
cargo "+$NIGHTLY" fuzz build -O
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for target in $(cargo "+$NIGHTLY" fuzz list); do
    # A crash writes its input under fuzz/artifacts/TARGET and fails the run.
    # Seeds (fuzz/seeds/TARGET, committed) start the run where the interesting inputs are, e.g.
    # components for the import check; new inputs go to the (ignored) corpus.
    corpora=()
    [ -d "seeds/$target" ] && corpora=("corpus/$target" "seeds/$target") && mkdir -p "corpus/$target"
    if ! cargo "+$NIGHTLY" fuzz run -O "$target" "${corpora[@]}" -- -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 -print_final_stats=1 >"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        echo "ci/fuzz.sh: $target crashed (its input is in fuzz/artifacts/$target)" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOG" | grep -o '[0-9]*$')
    echo "fuzz $target: ${runs:-?} runs in ${SECONDS_PER_TARGET} s, no crash"
done
