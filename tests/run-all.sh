#!/usr/bin/env bash
# The whole gwsteer test suite, from a fresh Debian machine (run as root):
# installs what it needs, checks formatting and lints, then runs the unit
# tests and every namespace test against the real kernel.
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
# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "gwsteer: %d passed, %d failed\n", p, f }' target/test-output.txt
