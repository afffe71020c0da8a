#!/usr/bin/env bash
# Coverage-guided fuzzing of gwsteer's input parsers with libFuzzer
# (cargo-fuzz): `config` (Config::from_bytes, then planning what validates)
# and `prev_result` (pod_addresses and convert to every cniVersion).
#
#   bash fuzz/run.sh [SECONDS]     each target for SECONDS (default 60)
#
# Fails on any panic, crash, hang (-timeout) or runaway memory; libFuzzer
# leaves the input in fuzz/artifacts/<target>/. Reproduce with
#   fuzz/target/<host triple>/release/<target> <file>
# The seeds in fuzz/corpus/<target>/ (written by fuzz/seeds.py) are read,
# never written: new inputs go to a temporary directory. FUZZ_MERGE=1 adds
# the inputs that cover new code to fuzz/corpus/. FUZZ_SANITIZER=address
# builds with AddressSanitizer (twice the build time; the parsers are safe
# Rust, so the default is none: panics and overflows are what is sought,
# and cargo-fuzz builds with debug assertions, so overflow panics).
#
# Stable Rust: cargo-fuzz passes compiler flags that are nightly-only
# (-Zsanitizer, -Cpasses=sancov-module …); RUSTC_BOOTSTRAP=1 lets the
# stable compiler accept them.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: $0 [seconds per target]" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

started=$SECONDS
echo "== building fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"
echo "   built in $((SECONDS - started)) s"

# The targets run as built above (cargo fuzz run would rebuild first, and a
# build failure would read like a finding).
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in config prev_result; do
    echo "== fuzzing $target for $secs s"
    mkdir -p "$work/$target" "artifacts/$target"
    "$bin/$target" "$work/$target" "corpus/$target" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -dict=json.dict \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 \
        2>"$work/$target.log" || {
        tail -n 60 "$work/$target.log" >&2
        echo "fuzz/run.sh: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    }
    grep -E 'DONE' "$work/$target.log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$work/$target.log" || true
    if [[ "${FUZZ_MERGE:-0}" == 1 ]]; then
        "$bin/$target" -merge=1 "corpus/$target" "$work/$target" 2>/dev/null
    fi
done
echo "== fuzzing done in $((SECONDS - started)) s, no failure"
