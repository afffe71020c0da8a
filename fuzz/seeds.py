#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/) from the conflist examples
and the shapes of tests/it/bad_input.rs: valid plugin configs as a runtime hands
them over, then one broken thing each. Rerun after the examples change.
`FUZZ_MERGE=1 bash fuzz/run.sh` adds the fuzzer's finds that cover new code."""
import copy, json, os, pathlib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

def prev(version="1.0.0"):
    ips = [
        {"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
        {"address": "fd00:244:0:1::5/64", "gateway": "fd00:244:0:1::1", "interface": 2},
    ]
    if version < "1.0.0":
        ips[0]["version"], ips[1]["version"] = "4", "6"
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "02:00:00:00:00:01"},
            {"name": "veth5", "mac": "02:00:00:00:01:05"},
            {"name": "eth0", "mac": "02:00:00:00:02:05", "sandbox": "/run/netns/pod"},
        ],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {},
    }

def plugin_configs():
    """The gwsteer object of every example conflist, as libcni hands it over."""
    out = {}
    for f in sorted((ROOT / "conflist-examples").glob("*.conflist")):
        conf = json.loads(f.read_text())
        for p in conf["plugins"]:
            if p.get("type") == "gwsteer":
                c = dict(p, name=conf["name"], cniVersion=conf["cniVersion"])
                c["prevResult"] = prev(conf["cniVersion"])
                out[f.stem] = c
    return out

BASE = {
    "cniVersion": "1.1.0", "name": "oam-net", "type": "gwsteer",
    "stateDir": "/run/cni/gwsteer", "logLevel": "debug", "lockTimeoutMs": 5000,
    "steering": [{
        "name": "oam", "table": 100, "priority": 1000,
        "gateways": [{"via": "192.0.2.254", "dev": "eth1", "weight": 2}, {"via": "fd00:192::fe"}],
        "destinations": ["0.0.0.0/0", "::/0"],
        "exclude": ["10.244.0.0/16", "10.96.0.0/12", "fd00:244::/48"],
        "namespaces": ["oam"],
    }],
    "args": {"cni": {"gwsteer": {"steering": ["oam"], "role": "client"}}},
    "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
    "prevResult": prev("1.1.0"),
}

def edit(path, value):
    c = copy.deepcopy(BASE)
    node = c
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return c

DELETE = object()
P = ["steering", 0]
BROKEN = {
    "missing-name": edit(["name"], DELETE),
    "missing-version": edit(["cniVersion"], DELETE),
    "version-0.2.0": edit(["cniVersion"], "0.2.0"),
    "typo-statedir": edit(["stateDri"], "/tmp/x"),
    "bad-name": edit(["name"], "bad net"),
    "relative-statedir": edit(["stateDir"], "state"),
    "bad-loglevel": edit(["logLevel"], "verbose"),
    "lock-timeout-0": edit(["lockTimeoutMs"], 0),
    "steering-object": edit(["steering"], {"name": "oam"}),
    "via-not-ip": edit(P + ["gateways", 0, "via"], "10.0.0.300"),
    "weight-0": edit(P + ["gateways", 0, "weight"], 0),
    "weight-257": edit(P + ["gateways", 0, "weight"], 257),
    "dev-space": edit(P + ["gateways", 0, "dev"], "eth 1"),
    "no-gateways": edit(P + ["gateways"], []),
    "upper-name": edit(P + ["name"], "OAM"),
    "table-main": edit(P + ["table"], 254),
    "table-0": edit(P + ["table"], 0),
    "table-huge": edit(P + ["table"], 4294967296),
    "cidr-33": edit(P + ["exclude", 1], "10.96.0.0/33"),
    "host-bits": edit(P + ["exclude", 0], "10.244.1.5/16"),
    "priority-high": edit(P + ["priority"], 32766),
    "priority-negative": edit(P + ["priority"], -5),
    "match-fwmark": edit(P + ["match"], "fwmark"),
    "mark-on-source": edit(P + ["mark"], "0x14"),
    "connmark": edit(P + ["match"], "connmark"),
    "unknown-policy-arg": edit(["args"], {"cni": {"gwsteer": {"steering": ["nope"]}}}),
    "bad-role": edit(["args"], {"cni": {"gwsteer": {"role": "boss"}}}),
    "gateway-network": edit(["gatewayNetwork"], {"bridge": "gwbr0"}),
    "prev-array": edit(["prevResult"], ["10.244.1.5/24"]),
    "prev-ips-object": edit(["prevResult", "ips"], {"address": "10.244.1.5/24"}),
    "prev-no-prefix": edit(["prevResult", "ips", 0, "address"], "10.244.1.5"),
    "prev-bad-gateway": edit(["prevResult", "ips", 0, "gateway"], "10.244.1.300"),
    "prev-bad-interface": edit(["prevResult", "ips", 0, "interface"], 7),
}

def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

def main():
    configs = dict(plugin_configs(), base=BASE)
    configs.update({f"broken-{k}": v for k, v in BROKEN.items()})
    for name, c in configs.items():
        write("config", f"{name}.json", json.dumps(c, indent=1).encode())
    write("config", "bad-json.json", b'{"cniVersion": "1.0.0", "name": "bad-net", ')
    write("config", "not-object.json", b'["cniVersion", "1.0.0"]')
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]:
        write("prev_result", f"bridge-{v}.json", json.dumps(prev(v), indent=1).encode())
    p = prev("0.4.0")
    p["ips"][1]["version"] = "4"
    write("prev_result", "version-mismatch.json", json.dumps(p).encode())
    for name in ["prev-array", "prev-ips-object", "prev-no-prefix", "prev-bad-gateway", "prev-bad-interface"]:
        write("prev_result", f"{name}.json", json.dumps(BROKEN[name]["prevResult"]).encode())
    write("prev_result", "no-interfaces.json",
          json.dumps({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8"}]}).encode())

if __name__ == "__main__":
    main()
