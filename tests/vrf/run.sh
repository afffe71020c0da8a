#!/usr/bin/env bash
# The VRF tier (run as root): builds tests/vrf_guest.rs on the host, then runs
# that test binary inside a qemu guest with Debian's stock kernel, which has
# VRF where this machine's kernel has none (tests/vrf/run-in-guest.sh). Exits
# with the tests' exit code; prints libtest's usual `test result:` line.
#
#   bash tests/vrf/run.sh [libtest args…]     e.g. bash tests/vrf/run.sh vrf_leg
#
# The guest shares this machine's filesystem, so the paths cargo baked into the
# binary (CARGO_BIN_EXE_gwsteer) are valid there; this script checks that they
# are not on a guest-private mount (/run, /dev, /proc, /sys), and the test
# `guest_runs_the_gwsteer_binary` runs the binary in the guest. The same holds
# for the libcni driver it builds (GWSTEER_LIBCNI_DRIVER).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -ne 0 ]]; then
    echo "vrf/run.sh: run as root (network namespaces; installs the guest's packages)" >&2
    exit 2
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v jq >/dev/null 2>&1 || {
    echo "vrf/run.sh: jq is needed (bash install/deps.sh installs it)" >&2
    exit 2
}

echo "== VRF tier: build tests/vrf_guest.rs on the host"
json=$(cargo test --no-run --quiet --test vrf_guest --message-format=json)
test_bin=$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "vrf_guest"
                    and .profile.test == true) | .executable // empty' <<<"$json" | tail -n 1)
gwsteer_bin=$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "gwsteer"
                       and (.target.kind | index("bin"))) | .executable // empty' <<<"$json" | tail -n 1)
# The libcni driver (tests/it/support/libcni.rs) for the tests that run a conflist
# through Debian's libcni: built here, since the guest sees this filesystem
# read-only and without CARGO_TARGET_DIR; GWSTEER_* reaches the guest.
target_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
if ! driver_out=$(bash tests/libcni-driver/build.sh "$target_dir/libcni-driver" 2>&1); then
    echo "vrf/run.sh: building the libcni driver failed (golang-go and golang-github-appc-cni-dev; bash install/deps.sh):" >&2
    echo "$driver_out" >&2
    exit 1
fi
export GWSTEER_LIBCNI_DRIVER=$target_dir/libcni-driver/libcni-driver
for f in "$test_bin" "$gwsteer_bin" "$GWSTEER_LIBCNI_DRIVER"; do
    if [[ -z $f || ! -x $f ]]; then
        echo "vrf/run.sh: missing the test binary, the gwsteer binary or the libcni driver (got '$test_bin', '$gwsteer_bin', '$GWSTEER_LIBCNI_DRIVER')" >&2
        exit 1
    fi
    case $(realpath "$f") in
    /run/* | /dev/* | /proc/* | /sys/*)
        echo "vrf/run.sh: $f is on a mount the guest does not share; set CARGO_TARGET_DIR elsewhere" >&2
        exit 1
        ;;
    esac
done
echo "   test binary $test_bin"
echo "   gwsteer     $gwsteer_bin"
echo "   libcni      $GWSTEER_LIBCNI_DRIVER"

echo "== VRF tier: run it in the guest"
# run-in-guest.sh sets GWSTEER_VRF_GUEST=1 in the guest; said again here so the
# command line reads as what it is.
exec bash tests/vrf/run-in-guest.sh env GWSTEER_VRF_GUEST=1 RUST_BACKTRACE=1 \
    "$test_bin" --test-threads=1 "$@"
