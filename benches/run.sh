#!/usr/bin/env bash
# The CNI benchmark: builds release binaries, runs `cargo bench --bench cni`
# (gwsteer ADD/DEL next to the reference sbr plugin, in namespaces it makes
# and removes) and writes the report to benches/RESULTS.md. Run as root:
#
#   sudo benches/run.sh                    # release build, the whole benchmark
#   sudo benches/run.sh --static-variant   # also an A/B row: gwsteer built static + LTO
#   sudo benches/run.sh -- --iterations 100 --concurrent 50   # options for the bench
#
# The machine's own network is never touched; see benches/cni.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "the benchmark builds network namespaces: run it as root (sudo benches/run.sh)" >&2
    exit 2
fi
export PATH="$HOME/.cargo/bin:$PATH"

static=0
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --static-variant) static=1 ;;
        --) shift; bench_args+=("$@"); break ;;
        *) bench_args+=("$1") ;;
    esac
    shift
done

if [ ! -x /usr/lib/cni/sbr ]; then
    echo "needs Debian's reference plugins: apt-get install containernetworking-plugins (or install/deps.sh)" >&2
    exit 2
fi
for tool in strace perf cc; do
    command -v "$tool" >/dev/null || echo "note: $tool not installed; the report says what is missing" >&2
done

echo "== cargo build --release" >&2
cargo build --release --bins

if [ "$static" = 1 ]; then
    # A static binary cannot be the default build: crt-static in RUSTFLAGS
    # without --target breaks proc-macro crates, and --target moves the
    # binary out of target/release. Built apart, measured as "alt build".
    echo "== static + LTO variant (target/bench-static)" >&2
    CARGO_TARGET_DIR=target/bench-static \
        RUSTFLAGS="-C target-feature=+crt-static" \
        CARGO_PROFILE_RELEASE_LTO=fat \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
        CARGO_PROFILE_RELEASE_PANIC=abort \
        cargo build --release --bin gwsteer --target x86_64-unknown-linux-gnu
    export GWSTEER_BENCH_ALT_BIN="$PWD/target/bench-static/x86_64-unknown-linux-gnu/release/gwsteer"
    export GWSTEER_BENCH_ALT_LABEL="static glibc + fat LTO + codegen-units 1 + panic abort"
fi

echo "== cargo bench --bench cni" >&2
cargo bench --bench cni -- --out benches/RESULTS.md "${bench_args[@]}"
echo "wrote benches/RESULTS.md" >&2
