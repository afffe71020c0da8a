#!/usr/bin/env bash
# gwsteer demo: asymmetric routing on a node with two uplinks, fixed per pod.
#
# Everything happens in network namespaces this script creates and deletes
# (also when interrupted); the machine's own network is never touched.
#
#   client-b ── router-b ── eth-b ┐
#                                 node ── cni0 ── pod (server on :8080)
#   client-a ── router-a ── eth-a ┘  (default route via router-a)
#
# router-a has no route to client-b's network, so without gwsteer the pod's
# replies to client-b (which leave by the node's default route) are lost.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
    echo "the demo builds network namespaces: run it as root (sudo bash tests/demo.sh)" >&2
    exit 2
fi
bash install/deps.sh
cargo build --release --quiet
gwsteer="$here/target/release/gwsteer"

p="gwdemo$$"
ns() { echo "$p-$1"; }
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    for n in pod client-a client-b router-a router-b node; do
        ip netns del "$(ns "$n")" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

for n in node router-a router-b client-a client-b pod; do
    ip netns add "$(ns "$n")"
    ip -n "$(ns "$n")" link set lo up
    ip netns exec "$(ns "$n")" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
for n in node router-a router-b; do
    ip netns exec "$(ns "$n")" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
done
# Requests from client-b arrive on eth-b, away from the default route:
# reverse-path filtering must be loose (2) for them to be let in at all.
ip netns exec "$(ns node)" sysctl -qw net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2
link() { # ns-a if-a ns-b if-b
    ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
    ip -n "$(ns "$1")" link set "$2" up
    ip -n "$(ns "$3")" link set "$4" up
}
addr() { ip -n "$(ns "$1")" addr add "$3" dev "$2" nodad 2>/dev/null || ip -n "$(ns "$1")" addr add "$3" dev "$2"; }

link node eth-a router-a down0
link node eth-b router-b down0
link router-a up0 client-a eth0
link router-b up0 client-b eth0
addr node eth-a 192.168.1.2/24;   addr router-a down0 192.168.1.1/24
addr node eth-b 192.168.2.2/24;   addr router-b down0 192.168.2.1/24
addr node eth-a fd00:1::2/64;     addr router-a down0 fd00:1::1/64
addr node eth-b fd00:2::2/64;     addr router-b down0 fd00:2::1/64
addr router-a up0 10.1.0.1/24;    addr client-a eth0 10.1.0.2/24
addr router-b up0 10.2.0.1/24;    addr client-b eth0 10.2.0.2/24
addr router-a up0 fd00:a::1/64;   addr client-a eth0 fd00:a::2/64
addr router-b up0 fd00:b::1/64;   addr client-b eth0 fd00:b::2/64
ip -n "$(ns node)" route add default via 192.168.1.1
ip -n "$(ns node)" -6 route add default via fd00:1::1
ip -n "$(ns client-a)" route add default via 10.1.0.1
ip -n "$(ns client-b)" route add default via 10.2.0.1
ip -n "$(ns client-a)" -6 route add default via fd00:a::1
ip -n "$(ns client-b)" -6 route add default via fd00:b::1
for r in a b; do
    gw4=192.168.1.2; gw6=fd00:1::2
    [ "$r" = b ] && gw4=192.168.2.2 && gw6=fd00:2::2
    ip -n "$(ns router-$r)" route add 10.244.0.0/16 via "$gw4"
    ip -n "$(ns router-$r)" -6 route add fd00:244::/48 via "$gw6"
done

cat > "$work/conflist.json" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "demo-net",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$work/ipam",
              "ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:244:0:1::/64"}]],
              "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
    {"type": "gwsteer", "stateDir": "$work/state", "logFile": "$work/gwsteer.log",
     "steering": [{"name": "oam", "table": 100,
                   "gateways": [{"via": "192.168.2.1", "dev": "eth-b"}, {"via": "fd00:2::1", "dev": "eth-b"}],
                   "exclude": ["10.244.0.0/16", "fd00:244::/48"]}]}
  ]
}
JSON
# Replies by the door the request came in: connmark.
python3 - "$work/conflist.json" "$work/connmark.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["plugins"][1]["steering"] = [{
    "name": "oam", "table": 100, "match": "connmark", "mark": "0x14",
    "ingressInterfaces": ["eth-b"],
    "gateways": [{"via": "192.168.2.1", "dev": "eth-b"}, {"via": "fd00:2::1", "dev": "eth-b"}]}]
c["plugins"][1]["firewallBackend"] = "nftables"
json.dump(c, open(sys.argv[2], "w"))
PY
# The same conflist without gwsteer, to show the problem.
python3 - "$work/conflist.json" "$work/plain.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["plugins"] = c["plugins"][:1]
json.dump(c, open(sys.argv[2], "w"))
PY

cni() { # command conflist prev-result-file -> result on stdout (a tiny runtime)
    python3 "$here/tests/cni_run.py" "$1" "$2" "$(ns node)" "/run/netns/$(ns pod)" \
        "$here/target/release:/usr/lib/cni"
}

serve() {
    ip netns exec "$(ns pod)" socat -T 5 TCP6-LISTEN:8080,fork,reuseaddr,ipv6only=0 SYSTEM:'echo hello from the pod' &
    server_pid=$!
    sleep 0.3
}
ask() { # client-ns addr
    local proto=TCP4
    case "$2" in *:*) proto=TCP6 ;; esac
    if out=$(ip netns exec "$(ns "$1")" timeout 3 socat -T 2 - "$proto:$2:8080,connect-timeout=2" </dev/null 2>&1) && [ -n "$out" ]; then
        printf '  %-9s -> %-18s answered: %s\n' "$1" "$2" "$out"
    else
        printf '  %-9s -> %-18s NO ANSWER\n' "$1" "$2"
    fi
}

say "1. A pod with only the primary plugin (bridge + host-local)"
addresses() { # result file -> sets pod4, pod6
    pod4=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print([i["address"].split("/")[0] for i in r["ips"] if ":" not in i["address"]][0])' "$1")
    pod6=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print([i["address"].split("/")[0] for i in r["ips"] if ":" in i["address"]][0])' "$1")
    echo "  pod addresses: $pod4, $pod6"
}
cni ADD "$work/plain.json" > "$work/plain-result.json"
addresses "$work/plain-result.json"
serve
ask client-a "$pod4"
ask client-b "$pod4"
ask client-b "[$pod6]"
echo "  client-b's requests arrive through router-b, but the replies leave by the"
echo "  node's default route to router-a, which has no route back to client-b."
cni DEL "$work/plain.json" >/dev/null

say "2. The same pod with gwsteer chained after the primary"
cni ADD "$work/conflist.json" > "$work/result.json"
addresses "$work/result.json"
run ip -n "$(ns node)" rule show
run ip -n "$(ns node)" -6 rule show
run ip -n "$(ns node)" route show table 100
run ip -n "$(ns node)" -6 route show table 100
ask client-b "$pod4"
ask client-b "[$pod6]"
echo "  The replies now leave through router-b, the way the request came."
ask client-a "$pod4"
echo "  client-a, on the traffic network, is no longer answered: every reply of this"
echo "  pod goes to the OaM router, which has no route back to it. That is the point"
echo "  for an OaM-only pod (answers to requests from the wrong side are dropped); use"
echo "  \"destinations\" to steer only the replies towards the OaM networks instead."

say "3. DEL: gwsteer removes exactly what it made"
cni DEL "$work/conflist.json" >/dev/null
run ip -n "$(ns node)" rule show
echo "  table 100: $(ip -n "$(ns node)" route show table 100 | wc -l) route(s); state records: $(find "$work/state" -name '*.json' | wc -l)"
echo "  and without gwsteer the reply is lost again:"
cni ADD "$work/plain.json" > "$work/plain-result.json"
addresses "$work/plain-result.json"
ask client-b "$pod4"
cni DEL "$work/plain.json" >/dev/null

say "4. Every client answered by the door its request came in: match \"connmark\""
cni ADD "$work/connmark.json" > "$work/result.json"
addresses "$work/result.json"
echo "  Connections that arrive on eth-b are marked; the pod's replies carry the mark"
echo "  back and one fwmark rule sends them to table 100, via router-b. Everything else"
echo "  (client-a's connections, the pod's own) keeps the default route."
run ip -n "$(ns node)" rule show
ask client-a "$pod4"
ask client-b "$pod4"
ask client-a "[$pod6]"
ask client-b "[$pod6]"
cni DEL "$work/connmark.json" >/dev/null
echo "  after DEL: $(ip -n "$(ns node)" rule show | grep -c 'lookup 100' || true) rule(s) to table 100, nftables tables of gwsteer: $(ip netns exec "$(ns node)" nft list tables | grep -c gwsteer || true)"

say "gwsteer's log of this demo"
cat "$work/gwsteer.log"
