#!/usr/bin/env bash
# The CNI benchmark: builds release binaries, runs `cargo bench --bench cni`
# (gwsteer ADD/DEL next to the reference sbr plugin, in namespaces it makes
# and removes) and writes the report to benches/RESULTS.md. Run as root:
#
#   sudo benches/run.sh                    # release build, the whole benchmark
#   sudo benches/run.sh --dynamic-variant  # also an A/B row: gwsteer linked dynamically
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

dynamic=0
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dynamic-variant) dynamic=1 ;;
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

if [ "$dynamic" = 1 ]; then
    # The shipped binary is static (.cargo/static-bin-rustc). For comparison,
    # the same tree and profile linked dynamically, built apart and measured
    # as "alt build".
    echo "== dynamically linked variant (target/bench-dynamic)" >&2
    CARGO_TARGET_DIR=target/bench-dynamic GWSTEER_DYNAMIC=1 \
        cargo build --release --bin gwsteer
    export GWSTEER_BENCH_ALT_BIN="$PWD/target/bench-dynamic/release/gwsteer"
    export GWSTEER_BENCH_ALT_LABEL="the same release profile, linked dynamically (GWSTEER_DYNAMIC=1)"
fi

echo "== cargo bench --bench cni" >&2
cargo bench --bench cni -- --out benches/RESULTS.md "${bench_args[@]}"
echo "wrote benches/RESULTS.md" >&2
