#!/usr/bin/env bash
# The whole gwsteer test suite, from a fresh Debian machine (run as root):
# installs what it needs, checks formatting and lints, then runs the unit
# tests and every namespace test against the real kernel, then the VRF tier
# in a qemu guest (tests/vrf/run.sh: this machine's kernel has no VRF).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "the tests build network namespaces: run as root (sudo bash tests/run-all.sh)" >&2
    exit 2
fi
bash install/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== build (release binary for the demo and examples)"
cargo build --release --quiet
echo "== cargo test (unit and namespace tests)"
cargo test --lib --bins --tests 2>&1 | tee target/test-output.txt
echo "== VRF tier (tests/vrf_guest.rs in a qemu guest with Debian's kernel)"
bash tests/vrf/run.sh 2>&1 | tee target/vrf-test-output.txt
grep '^test result:' target/vrf-test-output.txt >>target/test-output.txt
echo "== fuzzing the config and prevResult parsers (libFuzzer, 20 s per target)"
bash fuzz/run.sh 20
# One closing line for the whole suite. On the host the VRF tests only print
# "skipped: not in the VRF guest": counted as skipped, not as passed.
awk '/^test result:/ { p += $4; f += $6 } /skipped: not in the VRF guest/ { s++ }
     END { printf "gwsteer: %d passed, %d failed, %d skipped\n", p - s, f, s }' target/test-output.txt
