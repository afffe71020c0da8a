//! The conflists of `conflist-examples/` run through Debian's libcni, as a
//! runtime runs them: shared by `tests/it/examples_libcni.rs` (every example, on
//! this machine) and `tests/vrf_guest.rs` (the VRF example, in the qemu
//! guest, as this machine's kernel has no VRF).
//!
//! The one test-only rewrite ([`for_test`]): gwsteer's `stateDir` and
//! `logFile` and host-local's `dataDir` point into the test's temp dir, never
//! at the node's /run, /var/log or /var/lib. Everything else (interface
//! names, addresses, tables) runs as the file has it, on a node built in
//! namespaces with the interfaces the file names ([`example_node`]).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::cmd::netns_path;
use super::cni::{CniOutcome, write_json};
use super::lab::Lab;
use super::libcni::libcni;
use super::observe::{Family, ip_json};
use super::topo::wire;

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conflist-examples")
}

/// The example conflist `file` (a file name in `conflist-examples/`), parsed.
pub fn load(file: &str) -> Value {
    let path = examples_dir().join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The test-only rewrite: state, log and IPAM files into the lab's temp dir.
pub fn for_test(lab: &Lab, mut conf: Value) -> Value {
    for p in conf["plugins"].as_array_mut().expect("plugins") {
        if p["type"] == "gwsteer" {
            p["stateDir"] = json!(lab.subdir("state"));
            p["logFile"] = json!(lab.tmpdir().join("gwsteer.log"));
        }
        if p["ipam"]["type"] == "host-local" {
            p["ipam"]["dataDir"] = json!(lab.subdir("ipam"));
        }
    }
    conf
}

/// A pod attached to `node` by an example conflist, through libcni.
pub struct Run<'a> {
    pub lab: &'a Lab,
    pub node: String,
    /// The rewritten conflist ([`for_test`]) as libcni reads it.
    pub conflist: PathBuf,
    pub cache: PathBuf,
    pub version: String,
}

impl<'a> Run<'a> {
    pub fn new(lab: &'a Lab, node: &str, conf: &Value, file_name: &str) -> Run<'a> {
        let conf = for_test(lab, conf.clone());
        let conflist = lab.tmpdir().join(file_name);
        write_json(&conflist, &conf);
        Run {
            lab,
            node: node.to_string(),
            conflist,
            cache: lab.subdir("cni-cache"),
            version: conf["cniVersion"].as_str().unwrap().to_string(),
        }
    }

    /// The state store root the rewrite gave gwsteer.
    pub fn state_dir(&self) -> PathBuf {
        self.lab.subdir("state")
    }

    pub fn op(&self, op: &str, pod: &str, cid: &str, ifname: &str, args: &str) -> CniOutcome {
        libcni(
            &self.node,
            op,
            &self.conflist,
            &netns_path(pod),
            cid,
            ifname,
            Some(args),
            &self.cache,
        )
    }

    /// ADD then CHECK; the ADD result.
    pub fn add_check(&self, pod: &str, cid: &str, ifname: &str, args: &str) -> Value {
        let result = self
            .op("add", pod, cid, ifname, args)
            .expect_ok(&format!("libcni ADD {cid} ({})", self.conflist.display()));
        assert_eq!(result["cniVersion"], self.version.as_str(), "{result}");
        let checked = self.op("check", pod, cid, ifname, args);
        if self.version == "0.3.1" {
            assert!(
                !checked.success(),
                "libcni refuses CHECK at 0.3.1: {checked}"
            );
        } else {
            checked.expect_ok(&format!("libcni CHECK {cid}"));
        }
        result
    }

    pub fn del(&self, pod: &str, cid: &str, ifname: &str, args: &str) {
        self.op("del", pod, cid, ifname, args)
            .expect_ok(&format!("libcni DEL {cid}"));
    }

    /// No attachment record and no gwsteer rule (protocol 211) left.
    pub fn assert_clean(&self) {
        let records = self.lab.subdir("state");
        let left: Vec<String> = walk(&records)
            .into_iter()
            .filter(|p| p.contains("/attachments/") && p.ends_with(".json"))
            .collect();
        assert!(left.is_empty(), "records left after DEL: {left:?}");
        let ours = our_rules(&self.node);
        assert!(ours.is_empty(), "gwsteer rules left after DEL: {ours:?}");
    }
}

/// Every file under `dir` (recursively), as paths; empty if `dir` is missing.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// `ip -N -4|-6 rule`: protocols as numbers.
fn numeric_rules(ns: &str, family: Family) -> Vec<Value> {
    match ip_json(ns, &["-N", family.flag(), "rule"]) {
        Value::Array(a) => a,
        other => panic!("ip rule: {other}"),
    }
}

/// gwsteer's rules (protocol 211), both families.
pub fn our_rules(ns: &str) -> Vec<Value> {
    [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| numeric_rules(ns, f))
        .filter(|r| r["protocol"] == "211")
        .collect()
}

/// The node most examples name: `eth0` (10.0.0.11/24) to an upstream
/// namespace `up` (10.0.0.1) with the node's default route, and `eth1`
/// (addresses `eth1`) to a namespace `rtr` that holds `router` (addresses).
/// Returns the node's and the router's namespace names.
pub fn example_node(lab: &Lab, eth1: &[&str], router: &[&str]) -> (String, String) {
    let node = lab.router("node");
    let up = lab.netns("up");
    let rtr = lab.netns("rtr");
    wire(
        lab,
        (&node, "eth0", &["10.0.0.11/24"]),
        (&up, "eth0", &["10.0.0.1/24"]),
    );
    lab.route(&node, &["add", "default", "via", "10.0.0.1"]);
    wire(lab, (&node, "eth1", eth1), (&rtr, "eth0", router));
    (node, rtr)
}

/// [`example_node`]'s node namespace.
pub fn node_with_eth1(lab: &Lab, eth1: &[&str], router: &[&str]) -> String {
    example_node(lab, eth1, router).0
}

/// The addresses (without prefix length) of a CNI result's `ips`.
pub fn pod_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}
