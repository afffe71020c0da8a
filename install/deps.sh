#!/usr/bin/env bash
# Install what gwsteer's tests need on a fresh Debian 12 machine (run as root).
#
# Idempotent: when every binary and file the tests use is already present, it
# does not touch apt at all, so reruns (CI, developer machines) stay fast.
set -euo pipefail

PACKAGES=(
  containernetworking-plugins # bridge, host-local, ptp, sbr … in /usr/lib/cni
  golang-go                   # builds tests/libcni-driver
  golang-github-appc-cni-dev  # libcni sources in /usr/share/gocode
  iproute2                    # ip, ip netns, bridge
  nftables                    # nft
  iptables                    # iptables-legacy / iptables-nft
  socat
  tcpdump
  conntrack
  jq
  iputils-ping # ping, with -M do for don't-fragment probes
  procps       # sysctl
  kmod         # modprobe
  podman       # a real container runtime (CNI backend) for tests/it/podman.rs
  buildah      # podman build of the FROM-scratch image
  runc         # podman's OCI runtime here (crun refuses this machine's hybrid cgroups)
  busybox-static # the test pods' image
)

# What the tests actually execute or read; if all of it is there, skip apt.
NEEDED_PATHS=(
  /usr/lib/cni/bridge
  /usr/lib/cni/host-local
  /usr/lib/cni/ptp
  /usr/lib/cni/sbr
  /usr/share/gocode/src/github.com/containernetworking/cni/libcni/api.go
)
NEEDED_COMMANDS=(go ip bridge nft iptables iptables-legacy iptables-nft socat tcpdump conntrack jq ping sysctl modprobe podman buildah runc busybox)

missing=()
for p in "${NEEDED_PATHS[@]}"; do
  [[ -e "$p" ]] || missing+=("$p")
done
for c in "${NEEDED_COMMANDS[@]}"; do
  command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done

if ((${#missing[@]} == 0)); then
  echo "deps.sh: all test dependencies present; skipping apt"
else
  echo "deps.sh: missing: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps.sh: must run as root to install packages" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # Fail early and clearly if a package name does not exist in this release.
  for pkg in "${PACKAGES[@]}"; do
    candidate=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    if [[ -z "$candidate" || "$candidate" == "(none)" ]]; then
      echo "deps.sh: package '$pkg' has no installation candidate" >&2
      exit 1
    fi
  done
  apt-get install -y --no-install-recommends "${PACKAGES[@]}"
  for c in "${NEEDED_COMMANDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || {
      echo "deps.sh: '$c' still missing after install" >&2
      exit 1
    }
  done
fi

# Cargo comes from rustup on these machines, not from apt.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps.sh: cargo not found (expected the rustup toolchain in ~/.cargo/bin)" >&2
  exit 1
fi
echo "deps.sh: $(cargo --version), $(go version | cut -d' ' -f3)"
