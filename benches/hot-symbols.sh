#!/usr/bin/env bash
# Writes .cargo/hot-symbols.txt: the functions of target/release/gwsteer that
# a `source` CNI ADD, DEL, CHECK and VERSION run (with and without other
# pods holding the policy), sampled with perf (CPU time and page faults,
# user space) over a few hundred calls in namespaces this script makes and
# removes. The rustc wrapper (.cargo/static-bin-rustc) has
# the linker put them together at the start of .text, so a fresh process
# faults in fewer pages of code. Sampling misses a few of the smallest
# functions in any one run, so the names already listed that the binary
# still has (by name, whatever their hash now) are kept. Run it as root after a toolchain update or a larger
# change of the hot path, then rebuild (touch src/main.rs: cargo does not
# track the list) and commit the list.
#
#   sudo benches/hot-symbols.sh [calls]     # default 500 of each verb
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-500}
[ "$(id -u)" -eq 0 ] || { echo "run it as root: it makes network namespaces" >&2; exit 2; }
command -v perf >/dev/null || { echo "needs perf" >&2; exit 2; }
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin gwsteer
bin="$PWD/target/release/gwsteer"

p="gwhot$$"
work=$(mktemp -d /dev/shm/gwsteer-hot.XXXXXX)
cleanup() {
    for ns in "$p-n" "$p-r" "$p-pod"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
ip netns add "$p-n"; ip netns add "$p-r"; ip netns add "$p-pod"
ip -n "$p-n" link add eth-b type veth peer name down0 netns "$p-r"
ip -n "$p-n" link set eth-b up
ip -n "$p-n" addr add 192.168.2.2/24 dev eth-b
ip -n "$p-n" addr add fd00:2::2/64 dev eth-b nodad
ip -n "$p-r" link set down0 up
ip -n "$p-r" addr add 192.168.2.1/24 dev down0
ip -n "$p-r" addr add fd00:2::1/64 dev down0 nodad

# The benchmark's `source` config (benches/cni.rs), pod $1; network $2
# (`busy`: other pods hold its group; `solo`: pod $1 is its only holder,
# so each ADD makes the group and each DEL removes it).
conf() {
    local table=100 priority=1000
    [ "$2" = solo ] && table=101 priority=1100
    cat <<JSON
{"cniVersion":"1.0.0","name":"hot-$2","type":"gwsteer","stateDir":"$work/state",
 "logFile":"$work/gwsteer.log","logLevel":"info",
 "steering":[{"name":"oam","table":$table,"priority":$priority,
   "gateways":[{"via":"192.168.2.1","dev":"eth-b"},{"via":"fd00:2::1","dev":"eth-b"}],
   "exclude":["10.244.0.0/16","10.96.0.0/12","fd00:244::/48"]}],
 "prevResult":{"cniVersion":"1.0.0",
   "interfaces":[{"name":"cni0","mac":"0a:58:0a:f4:00:01"},{"name":"veth$1","mac":"0a:58:0a:f4:ff:ff"},
                 {"name":"eth0","mac":"0a:58:00:00:00:01","sandbox":"/run/netns/$p-pod"}],
   "ips":[{"interface":2,"address":"10.244.1.$1/24","gateway":"10.244.1.1"},
          {"interface":2,"address":"fd00:244:0:1::$1/64","gateway":"fd00:244:0:1::1"}],
   "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}],"dns":{}}}
JSON
}
call() { # verb pod network
    conf "$2" "$3" | ip netns exec "$p-n" env -i CNI_COMMAND="$1" CNI_CONTAINERID="hot-$2" \
        CNI_NETNS="/run/netns/$p-pod" CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-$2" "$bin" >/dev/null
}
export -f conf call
export p work bin calls
# Other pods hold the busy network's group, as on a busy node; pod 200
# comes and goes there, pod 201 alone in the solo network.
for i in $(seq 2 21); do call ADD "$i" busy; done
loop='for i in $(seq "$calls"); do
    call ADD 200 busy; call CHECK 200 busy; call DEL 200 busy; call VERSION 200 busy
    call ADD 201 solo; call DEL 201 solo
done'
perf record -q -o "$work/cpu.data" -F 50000 -e cpu-clock:u -- bash -c "$loop"
perf record -q -o "$work/faults.data" -c 1 -e page-faults:u -- bash -c "$loop"
list=.cargo/hot-symbols.txt
{
    for data in cpu faults; do
        perf report -i "$work/$data.data" --comm gwsteer --dso gwsteer --sort sym \
            --no-demangle --stdio 2>/dev/null |
            sed -n 's/.*\[\.\] \([^ ]*\).*/\1/p'
    done
    if [ -f "$list" ]; then
        # Listed names the binary still has, also those whose hash moved
        # (matched without it, as .cargo/ordered-cc does).
        nm --defined-only -P "$bin" | awk '
            function stem(s) { return s ~ /17h[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]E$/ ? substr(s, 1, length(s) - 20) : s }
            FNR == NR { have[$1] = 1; have_stem[stem($1)] = 1; next }
            ($0 in have) { print; next }
            (stem($0) in have_stem) { print }' - "$list"
    fi
} | grep -v '^0x' | sort -u >"$work/list"
mv "$work/list" "$list"
echo "wrote .cargo/hot-symbols.txt ($(wc -l <.cargo/hot-symbols.txt) functions)" >&2
