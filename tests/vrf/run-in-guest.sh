#!/usr/bin/env bash
# Runs one command inside a qemu guest booted with Debian's stock kernel, which
# has VRF (CONFIG_NET_VRF=m) where this machine's kernel has none.
#
#   bash tests/vrf/run-in-guest.sh <command> [args…]        (as root)
#
# The guest is virtme-ng's: it boots /boot/vmlinuz-<ver>-amd64 (from Debian's
# linux-image-amd64) under qemu with this machine's own filesystem as its root
# (read-only over 9p; /tmp, /etc, /var … are writable overlays that vanish with
# the guest), and the kernel's modules from /lib/modules/<ver> (same package),
# so `modprobe vrf` works in the guest. Software emulation (`--disable-kvm`):
# nested KVM on these machines hangs at boot.
#
# The command is an argument vector: it is written, each word quoted with
# printf %q, into a script file the guest runs; nothing is spliced into a shell
# string. It runs as root in the current directory, with GWSTEER_VRF_GUEST=1 and
# these host variables forwarded (the guest starts with an empty environment):
# PATH, HOME, RUST_BACKTRACE, RUST_LOG, RUST_TEST_THREADS and every GWSTEER_*.
# Its stdout and stderr are the guest console's; the script exits with the
# command's exit code, 124 when the run timed out, 125 when the guest did not
# run the command to completion (boot failure, kernel panic, qemu error).
#
# Installs what it needs (idempotent; nothing is done when all is present):
# Debian's qemu-system-x86, linux-image-amd64 and busybox-static (virtme-ng
# builds its initramfs with it), and virtme-ng from PyPI into its own venv
# (GWSTEER_VNG_VENV, default /opt/gwsteer-vng).
#
# Knobs: GWSTEER_VRF_TIMEOUT (seconds for the whole run, default 900),
# GWSTEER_VRF_MEMORY (default 2G), GWSTEER_VRF_CPUS (default 2),
# GWSTEER_VRF_KERNEL (a /boot/vmlinuz-… path; default the newest *-amd64 one),
# GWSTEER_VRF_RWDIR (one more host directory the guest may write to, e.g. for
# a report; it must exist).
# A boot plus a trivial command takes about 35 s here.
set -euo pipefail

VNG_VERSION=1.42
VENV=${GWSTEER_VNG_VENV:-/opt/gwsteer-vng}
TIMEOUT=${GWSTEER_VRF_TIMEOUT:-900}
MEMORY=${GWSTEER_VRF_MEMORY:-2G}
CPUS=${GWSTEER_VRF_CPUS:-2}

log() { echo "run-in-guest: $*" >&2; }
die() {
    log "$*"
    exit 125
}

if (($# == 0)); then
    echo "usage: $0 <command> [args…]   (runs the command in a VRF-capable qemu guest)" >&2
    exit 2
fi
[[ $(id -u) -eq 0 ]] || die "run as root (installs packages; the guest runs the command as root)"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "GWSTEER_VRF_TIMEOUT must be a number of seconds, not '$TIMEOUT'"
rwdirs=()
if [[ -n ${GWSTEER_VRF_RWDIR:-} ]]; then
    [[ -d $GWSTEER_VRF_RWDIR ]] || die "GWSTEER_VRF_RWDIR: no such directory: $GWSTEER_VRF_RWDIR"
    rwdirs+=("--rwdir=$(realpath "$GWSTEER_VRF_RWDIR")")
fi

newest_kernel() {
    local k
    k=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1) || true
    echo "$k"
}

# --- dependencies -----------------------------------------------------------
apt_packages=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || apt_packages+=(qemu-system-x86)
[[ -n ${GWSTEER_VRF_KERNEL:-} || -n $(newest_kernel) ]] || apt_packages+=(linux-image-amd64)
command -v busybox >/dev/null 2>&1 || apt_packages+=(busybox-static)
if ((${#apt_packages[@]})); then
    log "installing ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${apt_packages[@]}" >&2
fi

if [[ ! -x $VENV/bin/vng ]]; then
    log "installing virtme-ng $VNG_VERSION into $VENV"
    py=/usr/bin/python3
    [[ -x $py ]] || py=$(command -v python3) || die "no python3 to install virtme-ng with"
    if ! "$py" -m venv --clear "$VENV" >&2; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >&2
        "$py" -m venv --clear "$VENV" >&2
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "virtme-ng==$VNG_VERSION" >&2
fi
# vng starts virtme-run by name.
export PATH="$VENV/bin:$PATH"

kernel=${GWSTEER_VRF_KERNEL:-$(newest_kernel)}
[[ -r $kernel ]] || die "no Debian kernel: ${kernel:-/boot/vmlinuz-*-amd64 not found}"
ver=${kernel#*/vmlinuz-}
moddir=/lib/modules/$ver
[[ -f $moddir/modules.dep ]] || die "no modules for $ver: $moddir/modules.dep missing (reinstall linux-image-$ver)"
compgen -G "$moddir/kernel/drivers/net/vrf.ko*" >/dev/null ||
    grep -q '/vrf\.ko' "$moddir/modules.builtin" 2>/dev/null ||
    die "kernel $ver has no VRF module in $moddir"

# --- the command, as a script file the guest can read -------------------------
# /tmp is visible in the guest (as the lower layer of its /tmp overlay); the
# out/ subdirectory is shared read-write so the guest can report the exit code.
work=$(mktemp -d /tmp/gwsteer-vng.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out"
cwd=$(pwd -P)

{
    echo '#!/bin/bash'
    printf 'export GWSTEER_VRF_GUEST=1\n'
    for name in PATH HOME RUST_BACKTRACE RUST_LOG RUST_TEST_THREADS $(compgen -v GWSTEER_ || true); do
        [[ $name == GWSTEER_VRF_GUEST ]] && continue
        [[ -v $name ]] || continue
        printf 'export %s=%q\n' "$name" "${!name}"
    done
    printf 'export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
    printf 'cd %q || { echo "run-in-guest: no such directory in the guest: %q" >&2; exit 125; }\n' "$cwd" "$cwd"
    printf 'argv=('
    printf ' %q' "$@"
    printf ' )\n"${argv[@]}"\nrc=$?\n'
    printf 'echo "$rc" > %q\n' "$work/out/rc"
    printf 'exit "$rc"\n'
} >"$work/cmd.sh"

# --- boot -------------------------------------------------------------------
log "kernel $ver, $CPUS cpus, $MEMORY, timeout ${TIMEOUT}s: $(printf '%q ' "$@")"
start=$SECONDS
set +e
# timeout signals its whole process group: vng and the qemu it starts.
# vng's stdout and stderr are pipes, never our files: qemu reopens its console
# output with truncation, which would blank what a log file held before it.
# Its stderr is padded with NUL bytes, which only garble logs: dropped.
{
    timeout --kill-after=15 "$TIMEOUT" \
        vng --disable-kvm --cpus "$CPUS" --memory "$MEMORY" \
        --rwdir="$work/out" "${rwdirs[@]}" -r "$kernel" \
        --exec "bash $work/cmd.sh" </dev/null 2>&1 >&3 3>&- |
        tr -d '\000' >&2 3>&-
    exit "${PIPESTATUS[0]}"
} 3>&1 | cat
vng_rc=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - start))

if [[ -s $work/out/rc ]]; then
    rc=$(<"$work/out/rc")
    log "command exited $rc (guest run ${elapsed}s)"
    exit "$rc"
fi
if ((vng_rc == 124 || vng_rc == 137)); then
    log "timed out after ${TIMEOUT}s (GWSTEER_VRF_TIMEOUT)"
    exit 124
fi
die "the guest did not run the command to completion (vng exit $vng_rc after ${elapsed}s)"
