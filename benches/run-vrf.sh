#!/usr/bin/env bash
# The VRF rows of the CNI benchmark: gwsteer's VRF leaks (`leak: "pod"` and
# `leak: "cidr"`) next to the reference sbr plugin, measured inside the qemu
# guest of the VRF tier (tests/vrf/run-in-guest.sh: Debian's stock kernel,
# which has VRF where this machine's has none). Writes benches/RESULTS-VRF.md.
# Run as root:
#
#   sudo benches/run-vrf.sh                              # 300 iterations
#   sudo benches/run-vrf.sh --iterations 50 --levels 0,100   # options for the bench
#
# The guest runs under software emulation, so every absolute time is several
# times the host's; the ratios to sbr, measured interleaved in the same guest,
# are what the rows say. The machine's own network is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "the benchmark builds network namespaces in a guest: run it as root (sudo benches/run-vrf.sh)" >&2
    exit 2
fi
export PATH="$HOME/.cargo/bin:$PATH"
if [ ! -x /usr/lib/cni/sbr ]; then
    echo "needs Debian's reference plugins: apt-get install containernetworking-plugins (or install/deps.sh)" >&2
    exit 2
fi
command -v jq >/dev/null || {
    echo "needs jq (install/deps.sh)" >&2
    exit 2
}

echo "== cargo build --release" >&2
cargo build --release --bins
json=$(cargo bench --no-run --bench cni --message-format=json)
bench_bin=$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "cni")
                   | .executable // empty' <<<"$json" | tail -n 1)
[ -x "$bench_bin" ] || {
    echo "run-vrf.sh: no benchmark binary (got '$bench_bin')" >&2
    exit 1
}
out_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)/bench-vrf
mkdir -p "$out_dir"
rm -f "$out_dir/RESULTS-VRF.md"

echo "== the benchmark in the VRF guest ($bench_bin)" >&2
GWSTEER_VRF_RWDIR=$out_dir GWSTEER_VRF_TIMEOUT=${GWSTEER_VRF_TIMEOUT:-5400} \
    bash tests/vrf/run-in-guest.sh "$bench_bin" --bench --vrf --no-profile \
    --out "$out_dir/RESULTS-VRF.md" "$@"
cp "$out_dir/RESULTS-VRF.md" benches/RESULTS-VRF.md
echo "wrote benches/RESULTS-VRF.md" >&2
