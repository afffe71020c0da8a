//! Helpers for the firewall steering tests (`firewall_steering.rs`):
//! the two firewall backends, a third router and client on the asymmetric
//! topology of [`super::asym`], per-flow packet counters in the routers, a
//! census of the node's rules and firewall objects, a search for anything of
//! gwsteer's left in a namespace, and a fast way to run gwsteer with
//! synthetic prevResults.
//!
//! ```text
//!   clia ── rtra ── eth-a ┐  (default route via rtra, v4 and v6)
//!   clib ── rtrb ── eth-b ┼─ node ── cni0 ── pods (10.244.1.0/24, fd00:244:0:1::/64)
//!   clic ── rtrc ── eth-c ┘
//! ```
//!
//! No router has a route to another router's client network.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::asym::*;
use super::cni::run_captured;
use super::*;

/// A firewall backend gwsteer can be configured with (`firewallBackend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fw {
    Nftables,
}

impl Fw {
    pub fn name(self) -> &'static str {
        match self {
            Fw::Nftables => "nftables",
        }
    }
}

pub const RTR_C_V4: &str = "192.168.3.1";
pub const RTR_C_V6: &str = "fd00:3::1";
pub const CLIENT_C_V4: &str = "10.3.0.2";
pub const CLIENT_C_V6: &str = "fd00:c::2";

/// The client networks behind routers A, B and C: (letter, v4, v6).
pub const CLIENT_NETS: [(&str, &str, &str); 3] = [
    ("a", "10.1.0.0/24", "fd00:a::/64"),
    ("b", "10.2.0.0/24", "fd00:b::/64"),
    ("c", "10.3.0.0/24", "fd00:c::/64"),
];

pub fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr(ip), port)
}

/// Router C and client C, added to a [`Topo`]: `node eth-c ── rtrc ── clic`.
pub struct RouterC {
    pub rtrc: String,
    pub clic: String,
}

pub fn add_router_c(lab: &Lab, t: &Topo) -> RouterC {
    // Router C 192.168.3.1, client C 10.3.0.2: see `support::topo`.
    let rtrc = router_link(lab, &t.node, 'c', &[CLUSTER_V4, CLUSTER_V6]);
    let clic = client_behind(lab, &rtrc, 'c');
    RouterC { rtrc, clic }
}

/// A node with only router B's link (`eth-b`, 192.168.2.2/24, fd00:2::2/64;
/// router B 192.168.2.1, fd00:2::1): enough for table routes via router B,
/// for tests that need no traffic. Returns (node, router).
pub fn node_with_router_b(lab: &Lab) -> (String, String) {
    let node = lab.router("node");
    let rtrb = router_link(lab, &node, 'b', &[]);
    (node, rtrb)
}

/// A `connmark` policy: connections arriving on `ingress` get `mark`;
/// replies go via `gw4`/`gw6` in `table`.
pub fn connmark_policy(
    name: &str,
    table: u32,
    mark: &str,
    ingress: &str,
    gw4: &str,
    gw6: &str,
) -> Value {
    json!({
        "name": name,
        "table": table,
        "match": "connmark",
        "mark": mark,
        "ingressInterfaces": [ingress],
        "gateways": [{"via": gw4, "dev": ingress}, {"via": gw6, "dev": ingress}],
    })
}

/// A `mark` policy steering pod traffic to `egress` (CIDRs) via router B,
/// except to `exclude`.
pub fn egress_policy(
    name: &str,
    table: u32,
    mark: &str,
    egress: &[&str],
    exclude: &[&str],
) -> Value {
    let mut p = json!({
        "name": name,
        "table": table,
        "match": "mark",
        "mark": mark,
        "egressTo": egress,
        "gateways": [{"via": RTR_B_V4, "dev": "eth-b"}, {"via": RTR_B_V6, "dev": "eth-b"}],
    });
    if !exclude.is_empty() {
        p["exclude"] = json!(exclude);
    }
    p
}

/// `ip -j -N rule` of the node-level `fwmark` rule of a policy.
pub fn fwmark_rule(priority: u32, mark: &str, table: u32) -> Value {
    json!({
        "priority": priority,
        "src": "all",
        "fwmark": mark,
        "table": table.to_string(),
        "protocol": PROTO,
    })
}

// ---- packets per flow, counted in the routers ----

/// Counts, in router `router`, packets that arrive from the node (`down0`)
/// from a pod (cluster CIDRs) to each client network: rules commented
/// `v4-a`, `v6-a`, `v4-b`… in table `inet gwtest`. Counted in prerouting,
/// so packets the router then drops for want of a route count too.
pub fn count_flows(lab: &Lab, router: &str) {
    let mut rules = String::new();
    for (letter, v4, v6) in CLIENT_NETS {
        rules.push_str(&format!(
            "iifname \"down0\" ip saddr {CLUSTER_V4} ip daddr {v4} counter comment \"v4-{letter}\"\n"
        ));
        rules.push_str(&format!(
            "iifname \"down0\" ip6 saddr {CLUSTER_V6} ip6 daddr {v6} counter comment \"v6-{letter}\"\n"
        ));
    }
    let text = format!(
        "table inet gwtest {{\nchain pre {{\ntype filter hook prerouting priority -300; policy accept;\n{rules}}}\n}}\n"
    );
    nft_file(lab, router, "flows", &text);
}

/// Runs `nft -f` on `text` inside `ns`.
pub fn nft_file(lab: &Lab, ns: &str, what: &str, text: &str) {
    let path = lab.tmpdir().join(format!("{ns}-{what}.nft"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    lab.exec(ns, "nft", [OsStr::new("-f"), path.as_os_str()]);
}

/// The flow counters of [`count_flows`] in `router`: comment → packets.
pub fn flows(router: &str) -> BTreeMap<String, u64> {
    let out = exec_in(router, "nft", ["-j", "list", "table", "inet", "gwtest"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j: {e}: {out}"));
    let mut counts = BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let comment = rule["comment"].as_str().unwrap_or_default().to_string();
        let packets = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter"))
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter in {rule}"));
        counts.insert(comment, packets);
    }
    counts
}

/// Flow counters of several routers: (router label, flow) → packets.
pub fn all_flows(routers: &[(&str, &str)]) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (label, ns) in routers {
        for (flow, n) in flows(ns) {
            out.insert((label.to_string(), flow), n);
        }
    }
    out
}

/// Packets of `flow` through router `label` between two readings.
pub fn delta(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
    label: &str,
    flow: &str,
) -> u64 {
    let key = (label.to_string(), flow.to_string());
    after[&key] - before.get(&key).copied().unwrap_or(0)
}

// ---- what gwsteer left in a namespace ----

/// The iptables commands of both variants and families.
pub const XT_SAVES: [&str; 4] = [
    "iptables-legacy-save",
    "ip6tables-legacy-save",
    "iptables-nft-save",
    "ip6tables-nft-save",
];

/// `<program>` (an `*-save`) inside `ns`, its lines (empty when it fails:
/// a variant the namespace never used).
pub fn xt_save(ns: &str, program: &str, table: Option<&str>) -> Vec<String> {
    let args: Vec<&str> = match table {
        Some(t) => vec!["-t", t],
        None => vec![],
    };
    try_exec_in(ns, program, &args)
        .map(|out| out.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn nft_ruleset(ns: &str) -> Value {
    let out = exec_in(ns, "nft", ["-j", "list", "ruleset"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j list ruleset: {e}: {out}"))
}

/// Every gwsteer firewall object in `ns`: nftables tables named
/// `gwsteer-*` and any other mention of gwsteer in the nftables ruleset,
/// iptables lines (both variants and families, every table) that name a
/// `GWS-` chain or carry a `gwsteer:` comment.
pub fn firewall_objects(ns: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ruleset = nft_ruleset(ns);
    for item in ruleset["nftables"].as_array().into_iter().flatten() {
        if let Some(t) = item.get("table")
            && t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("gwsteer-"))
        {
            found.push(format!("nft table {} {}", t["family"], t["name"]));
        } else if item.get("table").is_none() {
            let text = without_handles(item).to_string();
            let foreign = item
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|v| v["table"].as_str())
                .is_some_and(|t| !t.starts_with("gwsteer-"));
            if foreign && (text.contains("gwsteer") || text.contains("GWS-")) {
                found.push(format!("nft: {text}"));
            }
        }
    }
    for program in XT_SAVES {
        for line in xt_save(ns, program, None) {
            if !line.starts_with('#') && (line.contains("GWS-") || line.contains("gwsteer")) {
                found.push(format!("{program}: {line}"));
            }
        }
    }
    found
}

/// `v` without nftables' `handle` numbers, which change when an object is
/// made again.
fn without_handles(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "handle")
                .map(|(k, v)| (k.clone(), without_handles(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_handles).collect()),
        other => other.clone(),
    }
}

/// gwsteer's rules (both families) and routes (any table) in `ns`.
pub fn routing_objects(ns: &str) -> Vec<String> {
    let mut found = Vec::new();
    for family in [Family::V4, Family::V6] {
        for r in our_rules(ns, family) {
            found.push(format!("{family:?} rule {r}"));
        }
        let out = ip(
            ns,
            [
                "-j",
                "-N",
                family.flag(),
                "route",
                "show",
                "table",
                "all",
                "proto",
                PROTO,
            ],
        );
        if let Ok(Value::Array(routes)) = serde_json::from_str::<Value>(&out) {
            for r in routes {
                found.push(format!("{family:?} route {r}"));
            }
        }
    }
    found
}

/// Nothing of gwsteer's in `node`: no firewall object, rule, route or
/// attachment record of `network`.
pub fn assert_clean(what: &str, node: &str, state_dir: &Path, network: &str) {
    let fw = firewall_objects(node);
    assert!(
        fw.is_empty(),
        "{what}: gwsteer firewall objects left: {fw:#?}"
    );
    let routing = routing_objects(node);
    assert!(
        routing.is_empty(),
        "{what}: gwsteer rules/routes left: {routing:#?}"
    );
    assert_eq!(
        records(state_dir, network),
        Vec::<String>::new(),
        "{what}: attachment records left"
    );
}

// ---- counting ----

/// The node's rules and firewall rules (not set elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// Every `ip rule`, per family.
    pub ip_rules: (usize, usize),
    /// nftables rules per table (`family name`), every table.
    pub nft_rules: BTreeMap<String, usize>,
    /// `-A` lines per `<program> <table>` for mangle and nat.
    pub xt_rules: BTreeMap<String, usize>,
}

impl Census {
    pub fn take(ns: &str) -> Census {
        let mut nft_rules = BTreeMap::new();
        for item in nft_ruleset(ns)["nftables"].as_array().into_iter().flatten() {
            if let Some(r) = item.get("rule") {
                let key = format!(
                    "{} {}",
                    r["family"].as_str().unwrap_or("?"),
                    r["table"].as_str().unwrap_or("?")
                );
                *nft_rules.entry(key).or_insert(0) += 1;
            }
        }
        let mut xt_rules = BTreeMap::new();
        for program in XT_SAVES {
            for table in ["mangle", "nat"] {
                let n = xt_save(ns, program, Some(table))
                    .iter()
                    .filter(|l| l.starts_with("-A "))
                    .count();
                if n > 0 {
                    xt_rules.insert(format!("{program} {table}"), n);
                }
            }
        }
        Census {
            ip_rules: (rules(ns, Family::V4).len(), rules(ns, Family::V6).len()),
            nft_rules,
            xt_rules,
        }
    }

    /// Firewall rules of gwsteer's backend `fw`.
    pub fn firewall_rules(&self, fw: Fw, network: &str) -> usize {
        match fw {
            Fw::Nftables => self
                .nft_rules
                .get(&format!("inet gwsteer-{network}"))
                .copied()
                .unwrap_or(0),
        }
    }
}

/// Element counts of the policies' member sets: nftables sets
/// `<policy>_v4`/`_v6` in table `inet gwsteer-<network>` (the egress and
/// exclusion sets have other names).
pub fn member_sets(ns: &str, fw: Fw, network: &str) -> BTreeMap<String, usize> {
    match fw {
        Fw::Nftables => {
            let table = format!("gwsteer-{network}");
            let out = exec_in(ns, "nft", ["-j", "list", "table", "inet", &table]);
            let v: Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j: {e}: {out}"));
            v["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("set"))
                .filter_map(|s| {
                    let name = s["name"].as_str()?;
                    let (policy, fam) = name.rsplit_once('_')?;
                    let member = !policy.contains('_') && (fam == "v4" || fam == "v6");
                    member.then(|| (name.to_string(), s["elem"].as_array().map_or(0, Vec::len)))
                })
                .collect()
        }
    }
}

// ---- gwsteer with synthetic prevResults ----

/// Pod number `i`'s prevResult (CNI 1.1.0): 10.244.x.y/16 and
/// fd00:244::<i+1>/64 on eth0 in a sandbox, as a bridge plugin would report.
pub fn synthetic_result(i: u32) -> Value {
    let v4 = format!("10.244.{}.{}/16", 1 + i / 250, 1 + i % 250);
    let v6 = format!("fd00:244::{:x}/64", i + 1);
    json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cni0", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": format!("/run/netns/synthetic-{i}")},
        ],
        "ips": [
            {"address": v4, "gateway": "10.244.0.1", "interface": 1},
            {"address": v6, "gateway": "fd00:244::1", "interface": 1},
        ],
    })
}

/// gwsteer's network config (CNI 1.1.0) for `network`, state in `state_dir`,
/// with the keys of `extra`.
pub fn gwsteer_config(network: &str, state_dir: &Path, extra: Value) -> Value {
    let mut c = gwsteer_plugin(state_dir, extra);
    c["name"] = json!(network);
    c["cniVersion"] = json!("1.1.0");
    c
}

/// One gwsteer call: command, container id, stdin config.
#[derive(Clone, Debug)]
pub struct Call {
    pub command: &'static str,
    pub cid: String,
    pub config: Value,
}

impl Call {
    pub fn add(config: &Value, i: u32) -> Call {
        let mut c = config.clone();
        c["prevResult"] = synthetic_result(i);
        Call {
            command: "ADD",
            cid: format!("ctr{i}"),
            config: c,
        }
    }

    pub fn del(config: &Value, i: u32) -> Call {
        let mut call = Call::add(config, i);
        call.command = "DEL";
        call
    }

    /// GC keeping the pods numbered `valid`.
    pub fn gc(config: &Value, valid: &[u32]) -> Call {
        let mut c = config.clone();
        c["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|i| json!({"containerID": format!("ctr{i}"), "ifname": "eth0"}))
            .collect();
        Call {
            command: "GC",
            cid: String::new(),
            config: c,
        }
    }
}

fn run_call(call: &Call) -> CniOutcome {
    let mut cmd = Command::new(gwsteer_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CNI_COMMAND", call.command)
        .env("CNI_PATH", cni_path());
    if !call.cid.is_empty() {
        cmd.env("CNI_CONTAINERID", &call.cid)
            .env("CNI_IFNAME", "eth0");
    }
    if call.command == "ADD" {
        // Never opened: mark, connmark and exemptions have no pod-side objects.
        cmd.env("CNI_NETNS", "/run/netns/gwsteer-test-synthetic-pod");
    }
    let stdin = serde_json::to_vec(&call.config).expect("serialize config");
    run_captured(cmd, stdin, Duration::from_secs(60))
}

/// Runs `calls` inside `node`, on two threads (each half in order), and
/// panics with the first failure. A process forked by a thread that joined
/// the node's netns starts in it: no `ip netns exec` per call.
pub fn run_all(node: &str, calls: Vec<Call>) {
    let half = calls.len().div_ceil(2);
    let mut chunks: Vec<Vec<Call>> = calls.chunks(half.max(1)).map(<[Call]>::to_vec).collect();
    let handles: Vec<_> = chunks
        .drain(..)
        .map(|chunk| {
            spawn_in_netns(node, move || {
                for call in &chunk {
                    let out = run_call(call);
                    if !out.success() {
                        return Err(format!("{} {}:\n{out}", call.command, call.cid));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        if let Err(e) = h.join().expect("gwsteer thread panicked") {
            panic!("{e}");
        }
    }
}

/// One call inside `node`; its outcome.
pub fn run_one(node: &str, call: Call) -> CniOutcome {
    in_netns(node, move || run_call(&call))
}

// ---- kindnet-like masquerades ----

/// How the node's primary CNI masquerades.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masq {
    /// kindnet's `KIND-MASQ-AGENT` with iptables-legacy.
    Legacy,
    /// The same with iptables-nft.
    XtNft,
    /// An nftables nat postrouting chain at priority 100 with `masquerade`.
    Nftables,
}

pub const MASQ_CHAIN: &str = "KIND-MASQ-AGENT";

impl Masq {
    /// The iptables commands (v4, v6) of the iptables kinds.
    pub fn tools(self) -> Option<[&'static str; 2]> {
        match self {
            Masq::Legacy => Some(["iptables-legacy", "ip6tables-legacy"]),
            Masq::XtNft => Some(["iptables-nft", "ip6tables-nft"]),
            Masq::Nftables => None,
        }
    }

    /// kindnet's rules: everything leaving the cluster CIDRs is masqueraded.
    pub fn install(self, lab: &Lab, node: &str) {
        match self.tools() {
            Some(tools) => {
                for (tool, cluster) in tools.iter().zip([CLUSTER_V4, CLUSTER_V6]) {
                    for rule in [
                        vec!["-N", MASQ_CHAIN],
                        vec!["-A", "POSTROUTING", "-j", MASQ_CHAIN],
                        vec!["-A", MASQ_CHAIN, "-d", cluster, "-j", "RETURN"],
                        vec!["-A", MASQ_CHAIN, "-j", "MASQUERADE"],
                    ] {
                        let mut args = vec!["-t", "nat"];
                        args.extend(rule);
                        lab.exec(node, tool, &args);
                    }
                }
            }
            None => nft_file(
                lab,
                node,
                "kmasq",
                &format!(
                    "table inet kmasq {{\nchain postrouting {{\ntype nat hook postrouting priority 100; policy accept;\n\
                     ip daddr != {CLUSTER_V4} masquerade\nip6 daddr != {CLUSTER_V6} masquerade\n}}\n}}\n"
                ),
            ),
        }
    }

    pub fn uninstall(self, lab: &Lab, node: &str) {
        match self.tools() {
            Some(tools) => {
                for tool in tools {
                    for rule in [
                        vec!["-D", "POSTROUTING", "-j", MASQ_CHAIN],
                        vec!["-F", MASQ_CHAIN],
                        vec!["-X", MASQ_CHAIN],
                    ] {
                        let mut args = vec!["-t", "nat"];
                        args.extend(rule);
                        lab.exec(node, tool, &args);
                    }
                }
            }
            None => {
                lab.exec(node, "nft", ["delete", "table", "inet", "kmasq"]);
            }
        }
    }

    /// The rules of `KIND-MASQ-AGENT` (`-A` lines of `*-save -t nat`), (v4, v6).
    pub fn chain(self, node: &str) -> Option<(Vec<String>, Vec<String>)> {
        let tools = self.tools()?;
        let lines = |tool: &str| -> Vec<String> {
            xt_save(node, &format!("{tool}-save"), Some("nat"))
                .into_iter()
                .filter(|l| l.starts_with(&format!("-A {MASQ_CHAIN} ")))
                .collect()
        };
        Some((lines(tools[0]), lines(tools[1])))
    }
}

/// The source address a peer sees for connections from the pod in `pod_ns`
/// to the peer's servers at `to` (v4, v6).
pub fn seen_by_peer(pod_ns: &str, to: [SocketAddr; 2]) -> [IpAddr; 2] {
    to.map(|a| match tcp_pong(pod_ns, a, OK) {
        Ok(p) => p.peer,
        Err(e) => panic!("{pod_ns} -> {a}: {e}"),
    })
}
