//! Shared by the reliability tests (`crash.rs`, `concurrency.rs`, `drift.rs`,
//! `cli.rs`): a node namespace with an uplink that holds the gateways,
//! gwsteer invoked directly as a runtime does (optionally with the test-only
//! fault hook armed), and the node's whole gwsteer-relevant state — rules,
//! owned tables, the multipath sysctl and the state store — read back as one
//! JSON value that tests compare with known-good snapshots. Also used by
//! `tests/vrf_guest.rs` (`Node`, `prev_result`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// Gateways on the node's uplink `eth1` (192.0.2.1/24, fd00:192::1/64).
pub const GW4_A: &str = "192.0.2.254";
pub const GW4_B: &str = "192.0.2.253";
pub const GW6_A: &str = "fd00:192::fe";
pub const GW6_B: &str = "fd00:192::fd";

/// The sysctl a policy with several IPv4 gateways owns.
pub const MULTIPATH_SYSCTL: &str = "net.ipv4.fib_multipath_use_neigh";
/// The sysctl a mark or connmark policy owns.
pub const SRC_VALID_MARK: &str = "net.ipv4.conf.all.src_valid_mark";

/// The variable that arms gwsteer's test-only fault hook (src/fault.rs).
pub const ABORT_AFTER: &str = "GWSTEER_TEST_ABORT_AFTER";

/// Exit code of a gwsteer killed by the fault hook (SIGKILL).
pub const KILLED: i32 = 128 + 9;

/// The cluster CIDRs a policy usually excludes.
pub const CLUSTER: [&str; 2] = ["10.244.0.0/16", "fd00:244::/48"];

/// A source policy `name` in `table` (at `priority`, if given) with two
/// IPv4 gateways (multipath: it owns [`MULTIPATH_SYSCTL`]) and one IPv6
/// gateway on eth1, excluding `exclude`.
pub fn multipath_policy(
    name: &str,
    table: u32,
    priority: Option<u32>,
    exclude: [&str; 2],
) -> Value {
    let mut p = json!({
        "name": name,
        "table": table,
        "gateways": [
            {"via": GW4_A, "dev": "eth1"}, {"via": GW4_B, "dev": "eth1"},
            {"via": GW6_A, "dev": "eth1"}
        ],
        "exclude": exclude
    });
    if let Some(priority) = priority {
        p["priority"] = json!(priority);
    }
    p
}

/// Steering by one `match: "connmark"` policy `lb` (table 160, priority
/// 1600, mark 0x14 on eth1): per pod only a set element (nftables), a
/// node-level fwmark rule per family, firewall chains, and it owns
/// [`SRC_VALID_MARK`].
pub fn connmark_lb() -> Value {
    json!([{
        "name": "lb",
        "table": 160,
        "priority": 1600,
        "match": "connmark",
        "mark": "0x14",
        "ingressInterfaces": ["eth1"],
        "gateways": [{"via": GW4_A}, {"via": GW6_A}]
    }])
}

/// Someone else's objects (`ip` arguments): a route in table 300, a rule
/// to it, a route in main.
pub const FOREIGN: [&[&str]; 3] = [
    &[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        GW4_A,
        "table",
        "300",
    ],
    &[
        "rule", "add", "priority", "600", "from", "10.9.9.9", "table", "300",
    ],
    &["route", "add", "203.0.113.0/24", "via", GW4_B],
];

/// A node namespace for gwsteer, its uplink, one pod namespace (source
/// steering never enters it; `CNI_NETNS` must name a real one) and a state
/// dir and log under the lab's temp dir.
pub struct Node {
    pub lab: Lab,
    pub ns: String,
    pub pod_netns: String,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Node {
    pub fn new(tag: &str) -> Node {
        let lab = Lab::new(tag);
        let ns = uplink_node(&lab);
        let pod_netns = netns_path(&lab.netns("pod"));
        let state = lab.tmpdir().join("state");
        let log = lab.tmpdir().join("gwsteer.log");
        Node {
            lab,
            ns,
            pod_netns,
            state,
            log,
        }
    }

    /// A gwsteer network config (cniVersion 1.1.0, debug log to [`Node::log`]).
    pub fn config(&self, network: &str, steering: Value) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": network,
            "type": "gwsteer",
            "stateDir": self.state,
            "logFile": self.log,
            "logLevel": "debug",
            "steering": steering,
        })
    }

    /// Runs gwsteer in the node namespace: `command` for `cid`/eth0 with
    /// `config` (+ `prevResult`) on stdin and `env` added to the spec's
    /// variables.
    pub fn call(
        &self,
        command: &str,
        cid: &str,
        config: &Value,
        prev: Option<&Value>,
        env: &[(&str, String)],
    ) -> CniOutcome {
        let mut config = config.clone();
        if let Some(p) = prev {
            config["prevResult"] = p.clone();
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(gwsteer_bin());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("CNI_") || k == ABORT_AFTER {
                cmd.env_remove(k);
            }
        }
        cmd.env("CNI_COMMAND", command).env("CNI_PATH", cni_path());
        if !cid.is_empty() {
            cmd.env("CNI_CONTAINERID", cid)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_NETNS", &self.pod_netns)
                .env("CNI_ARGS", k8s_cni_args("default", cid, cid));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stdin = serde_json::to_vec(&config).expect("serialize config");
        let out = run_captured(cmd, stdin, Duration::from_secs(60));
        assert!(
            !out.stderr.contains("panicked"),
            "{command} {cid}: gwsteer panicked:\n{out}"
        );
        out
    }

    pub fn add(&self, cid: &str, config: &Value, prev: &Value) -> CniOutcome {
        self.call("ADD", cid, config, Some(prev), &[])
    }

    pub fn del(&self, cid: &str, config: &Value, prev: &Value) -> CniOutcome {
        self.call("DEL", cid, config, Some(prev), &[])
    }

    pub fn check(&self, cid: &str, config: &Value, prev: &Value) -> CniOutcome {
        self.call("CHECK", cid, config, Some(prev), &[])
    }

    /// GC keeping exactly `valid` (container ids, interface eth0).
    pub fn gc(&self, config: &Value, valid: &[&str]) -> CniOutcome {
        let mut config = config.clone();
        config["cni.dev/valid-attachments"] = Value::Array(
            valid
                .iter()
                .map(|c| json!({"containerID": c, "ifname": "eth0"}))
                .collect(),
        );
        self.call("GC", "", &config, None, &[])
    }

    /// The operator CLI with `--state-dir` set to this node's state dir.
    pub fn cli(&self, args: &[&str]) -> CniOutcome {
        let state = self.state.display().to_string();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--state-dir", &state]);
        gwsteer_cli(&self.ns, &full)
    }

    /// gwsteer's rules (protocol 211), as `inet 1000: from 10.244.1.5 lookup 100`.
    pub fn gw_rules(&self) -> BTreeSet<String> {
        gw_rules(&self.ns)
    }

    /// Every non-default rule of both families, as `ip -j rule` prints
    /// them, sorted (rules of one priority list in the order they were made).
    pub fn all_rules(&self) -> Value {
        let sorted = |family| {
            let mut v = custom_rules(&self.ns, family);
            v.sort_by_key(|r| r.to_string());
            v
        };
        json!({"4": sorted(Family::V4), "6": sorted(Family::V6)})
    }

    /// Routes of `table`, both families, as `ip -j route` prints them.
    pub fn table(&self, table: u32) -> Vec<Value> {
        let mut all = routes(&self.ns, Family::V4, table);
        all.extend(routes(&self.ns, Family::V6, table));
        all
    }

    pub fn sysctl(&self, key: &str) -> String {
        self.lab.read_sysctl(&self.ns, key)
    }

    /// Everything a gwsteer verb may change, read back from the kernel and
    /// the state dir: rules of both families, the routes of `tables`, the
    /// sysctls gwsteer may own, the nftables ruleset (see [`nft_ruleset`])
    /// and the state store (see [`store_snapshot`]).
    pub fn snapshot(&self, tables: &[u32]) -> Value {
        let routes: BTreeMap<String, Vec<Value>> = tables
            .iter()
            .map(|t| (t.to_string(), self.table(*t)))
            .collect();
        json!({
            "rules": self.all_rules(),
            "routes": routes,
            "sysctl": {
                MULTIPATH_SYSCTL: self.sysctl(MULTIPATH_SYSCTL),
                SRC_VALID_MARK: self.sysctl(SRC_VALID_MARK),
            },
            "nftables": nft_ruleset(&self.ns),
            "store": store_snapshot(&self.state),
        })
    }

    /// The last `n` lines of the log (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// `nft -j list ruleset` in `ns` without metainfo and handles, set
/// elements sorted (their order is the hash's).
pub fn nft_ruleset(ns: &str) -> Value {
    let mut v = match try_exec_in(ns, "nft", ["-j", "list", "ruleset"]) {
        Ok(out) if out.trim().is_empty() => json!({"nftables": []}),
        Ok(out) => serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j: {e}: {out}")),
        Err(e) => json!({"error": e.to_string()}),
    };
    if let Some(items) = v.get_mut("nftables").and_then(Value::as_array_mut) {
        items.retain(|i| i.get("metainfo").is_none());
    }
    normalise(&mut v);
    v
}

fn normalise(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("handle");
            if let Some(Value::Array(elems)) = map.get_mut("elem") {
                elems.sort_by_key(|e| e.to_string());
            }
            map.values_mut().for_each(normalise);
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// The state dir as `{relative path: content}`: directories as `"dir"`,
/// empty files (holds) as `""`, JSON files parsed with the volatile
/// `created` time removed, other files as text. The lock file is left out
/// (it is never removed). Temporary files or set-aside records show up as
/// themselves, so a comparison catches them.
pub fn store_snapshot(state: &Path) -> Value {
    let mut out = BTreeMap::new();
    walk(state, state, &mut out);
    json!(out)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Value>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .display()
            .to_string();
        if path.is_dir() {
            out.insert(rel, json!("dir"));
            walk(root, &path, out);
        } else if path.file_name().is_some_and(|n| n == "lock") {
            continue;
        } else {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let value = match serde_json::from_str::<Value>(&text) {
                Ok(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("created");
                    }
                    v
                }
                Err(_) => json!(text),
            };
            out.insert(rel, value);
        }
    }
}

/// What the reference bridge + host-local would return for pod number `n`
/// of a /24 + /64 pair: `<v4_net>.n/24` and `<v6_net>::n/64` on the
/// sandbox's eth0 (cniVersion 1.1.0).
pub fn prev_result(v4_net: &str, v6_net: &str, n: u16, sandbox: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cni0", "mac": "02:00:00:00:00:01"},
            {"name": format!("veth{n}"), "mac": "02:00:00:00:01:01"},
            {"name": "eth0", "mac": "02:00:00:00:02:02", "sandbox": sandbox}
        ],
        "ips": [
            {"address": format!("{v4_net}.{n}/24"), "gateway": format!("{v4_net}.1"), "interface": 2},
            {"address": format!("{v6_net}::{n:x}/64"), "gateway": format!("{v6_net}::1"), "interface": 2}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {}
    })
}

/// Panics with a readable difference (and `context`) unless equal.
pub fn assert_state(what: &str, want: &Value, got: &Value, context: &dyn Fn() -> String) {
    if want != got {
        panic!(
            "{what}: state differs from the expected snapshot:\n{}\n--- context ---\n{}",
            json_diff(want, got).join("\n"),
            context()
        );
    }
}
