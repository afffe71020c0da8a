//! Shared by the gateway network tests (`gateway_network.rs`,
//! `gateway_network_v6.rs`): pods attached on `net1` by the conflist runner,
//! the router role, and read-backs of what gwsteer makes on a node (its
//! marked links, nftables tables).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::{Value, json};

use super::*;

/// Two nodes, `nodea` and `nodeb`, on an underlay segment: a switch
/// namespace `sw` whose bridge `br0` (multicast snooping off) holds port
/// `p<i>` of node i's `under0`, which gets `addrs[i]`; each node's default
/// route goes via `gateway` (of either family). Returns the nodes.
pub fn underlay(lab: &Lab, addrs: [&str; 2], gateway: &str) -> Vec<String> {
    let sw = lab.netns("sw");
    lab.ip(
        &sw,
        [
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    );
    lab.ip(&sw, ["link", "set", "br0", "up"]);
    let nodes: Vec<String> = ["nodea", "nodeb"].iter().map(|n| lab.netns(n)).collect();
    for (i, node) in nodes.iter().enumerate() {
        let port = format!("p{i}");
        lab.veth(node, "under0", &sw, &port);
        lab.ip(&sw, ["link", "set", &port, "master", "br0"]);
        lab.addr(node, "under0", addrs[i]);
        lab.route(node, &["add", "default", "via", gateway]);
    }
    nodes
}

/// A pod's primary network: namespace `pod.0` whose eth0 (addresses
/// `pod.1`) leads to namespace `peer.0`'s eth0 (addresses `peer.1`), the
/// pod's default routes via each of `via`. Returns (pod, peer).
pub fn pod_with_peer(
    lab: &Lab,
    pod: (&str, &[&str]),
    peer: (&str, &[&str]),
    via: &[&str],
) -> (String, String) {
    let pod_ns = lab.netns(pod.0);
    let peer_ns = lab.netns(peer.0);
    wire(lab, (&pod_ns, "eth0", pod.1), (&peer_ns, "eth0", peer.1));
    for gw in via {
        lab.route(&pod_ns, &["add", "default", "via", gw]);
    }
    (pod_ns, peer_ns)
}

/// The same conflist with the router role for this pod (Multus cni-args).
pub fn as_router(conflist: &Value) -> Value {
    let mut c = conflist.clone();
    c["plugins"][1]["args"] = json!({"cni": {"gwsteer": {"role": "router"}}});
    c
}

/// A pod attached on `net1` by a conflist, with what DEL and CHECK need.
pub struct Attached {
    pub node: String,
    pub conflist: Value,
    pub id: String,
    pub netns: String,
    pub result: Value,
    pub args: String,
}

/// ADD of pod netns `pod` as container `id` (interface net1) with `args`.
pub fn add(node: &str, conflist: &Value, id: &str, pod: &str, args: String) -> Attached {
    let result = conflist_add(node, conflist, id, &netns_path(pod), "net1", Some(&args))
        .unwrap_or_else(|o| panic!("ADD {id}: {o}"));
    Attached {
        node: node.to_string(),
        conflist: conflist.clone(),
        id: id.to_string(),
        netns: netns_path(pod),
        result,
        args,
    }
}

impl Attached {
    /// The first address of the ADD result.
    pub fn ip(&self) -> IpAddr {
        self.result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn check(&self) -> Result<(), CniOutcome> {
        conflist_check(
            &self.node,
            &self.conflist,
            &self.id,
            &self.netns,
            "net1",
            Some(&self.args),
            &self.result,
        )
    }

    pub fn del(&self) {
        conflist_del(
            &self.node,
            &self.conflist,
            &self.id,
            Some(&self.netns),
            "net1",
            Some(&self.args),
            Some(&self.result),
        )
        .unwrap_or_else(|o| panic!("DEL {}: {o}", self.id));
    }
}

pub fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// `ip -d link show dev <dev>` in `ns`.
pub fn link(ns: &str, dev: &str) -> Value {
    ip_json(ns, &["-d", "link", "show", "dev", dev])[0].clone()
}

pub fn mtu(ns: &str, dev: &str) -> u64 {
    link(ns, dev)["mtu"].as_u64().unwrap()
}

/// Devices in `ns` that gwsteer marked as its own.
pub fn marked_links(ns: &str) -> Vec<String> {
    ip_json(ns, &["-d", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifalias"] == "gwsteer")
        .map(|l| l["ifname"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The all-zero FDB entries of `gwvx0` in `node`: the remotes it floods to.
pub fn flood_list(node: &str) -> Vec<String> {
    serde_json::from_str::<Value>(&exec_in(
        node,
        "bridge",
        ["-j", "fdb", "show", "dev", "gwvx0"],
    ))
    .unwrap()
    .as_array()
    .unwrap()
    .iter()
    .filter(|e| e["mac"] == "00:00:00:00:00:00")
    .filter_map(|e| e["dst"].as_str().map(str::to_string))
    .collect()
}

/// Names of the nftables tables in `ns`.
pub fn nft_tables(ns: &str) -> Vec<String> {
    let out = exec_in(ns, "nft", ["-j", "list", "tables"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["table"]["name"].as_str().map(str::to_string))
        .collect()
}

/// After DEL of every pod and `gwsteer cleanup`: no link, rule, firewall
/// table or state of gwsteer's in `node`.
pub fn assert_nothing_left(node: &str, state: &Path) {
    assert_eq!(
        marked_links(node),
        Vec::<String>::new(),
        "gwsteer links in {node}"
    );
    assert!(
        try_ip(node, ["link", "show", "dev", "gwvx0"]).is_err(),
        "gwvx0 left in {node}"
    );
    let gws: Vec<String> = nft_tables(node)
        .into_iter()
        .filter(|t| t.starts_with("gwsteer"))
        .collect();
    assert!(
        gws.is_empty(),
        "gwsteer nftables tables left in {node}: {gws:?}"
    );
    for fam in [Family::V4, Family::V6] {
        let ours: Vec<Value> = rules(node, fam)
            .into_iter()
            .filter(|r| r["protocol"] == "211" || r["protocol"] == "gwsteer")
            .collect();
        assert!(ours.is_empty(), "{node}: gwsteer rules left: {ours:?}");
    }
    let left: Vec<_> = std::fs::read_dir(state)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "state left in {}: {left:?}",
        state.display()
    );
}
