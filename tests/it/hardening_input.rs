//! Hostile names and values, end to end: every name has a limit checked when
//! it arrives, DEL of a name past a limit succeeds (nothing can have been
//! recorded for it), names reach nft only as JSON, and sysctls gwsteer
//! writes are only the ones it ever plans.

use std::fs;
use std::path::Path;

use crate::support::*;
use serde_json::{Value, json};

/// A source-steering config of network `name` for a pod at 10.244.1.5.
fn source_config(name: &str, state: &Path, pod: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "gwsteer",
        "stateDir": state,
        "steering": [{
            "name": "oam",
            "table": 100,
            "gateways": [{"via": "192.0.2.254"}]
        }],
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": pod}],
            "ips": [{"address": "10.244.1.5/24", "interface": 0}]
        }
    })
}

/// gwsteer's rules (routing protocol 211) in `ns`.
fn gw_rules(ns: &str) -> Vec<Value> {
    rules(ns, Family::V4)
        .into_iter()
        .filter(|r| matches!(r["protocol"].as_str(), Some("211" | "gwsteer")))
        .collect()
}

/// Every entry under `dir`, recursively.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path().display().to_string());
            out.extend(tree(&e.path()));
        }
    }
    out
}

/// A name at each limit works (ADD steers, DEL removes); one past it is
/// refused by ADD and CHECK with the limit named, and DEL of it succeeds
/// without leaving anything in the state directory.
#[test]
fn names_at_their_limits_work_and_del_past_them_succeeds() {
    let lab = Lab::new("hinames");
    let node = uplink_node(&lab);
    let pod = netns_path(&lab.netns("pod"));
    let state = lab.tmpdir().join("state");

    // At the limits: a 200-byte network name, a 200-byte container id.
    let net200 = "n".repeat(200);
    let id200 = "c".repeat(200);
    let conf = source_config(&net200, &state, &pod);
    let add = CniCall::new("ADD", &id200, "eth0", conf.clone()).netns(&pod);
    invoke(&node, &gwsteer_bin(), &add).expect_ok("ADD at the limits");
    assert_eq!(gw_rules(&node).len(), 1, "{:?}", gw_rules(&node));
    let mut check = add.clone();
    check.command = "CHECK".into();
    invoke(&node, &gwsteer_bin(), &check).expect_ok("CHECK at the limits");
    let mut del = add.clone();
    del.command = "DEL".into();
    invoke(&node, &gwsteer_bin(), &del).expect_ok("DEL at the limits");
    assert!(gw_rules(&node).is_empty(), "{:?}", gw_rules(&node));

    // Past them: (network name, container id, ifname, code of ADD, message).
    let past: [(String, String, &str, u64, &str); 5] = [
        (
            "n".repeat(201),
            "c1".into(),
            "eth0",
            7,
            "name: the network name is 201 bytes long; the limit is 200",
        ),
        (
            "n".repeat(300),
            "c1".into(),
            "eth0",
            7,
            "name: the network name is 300 bytes long; the limit is 200",
        ),
        (
            "net".into(),
            "c".repeat(201),
            "eth0",
            4,
            "CNI_CONTAINERID: the container id is 201 bytes long; the limit is 200",
        ),
        (
            "net".into(),
            "c".repeat(250),
            "eth0",
            4,
            "CNI_CONTAINERID: the container id is 250 bytes long; the limit is 200",
        ),
        (
            "net".into(),
            "c1".into(),
            "eth0123456789abc",
            4,
            "CNI_IFNAME: \"eth0123456789abc\" is not a valid interface name: is 16 bytes long",
        ),
    ];
    let before = tree(&state);
    let mut failures = Vec::new();
    for (net, id, ifname, code, msg) in &past {
        let conf = source_config(net, &state, &pod);
        let what = format!(
            "network {} bytes, id {} bytes, ifname {ifname}",
            net.len(),
            id.len()
        );
        for verb in ["ADD", "CHECK"] {
            let call = CniCall::new(verb, id, ifname, conf.clone()).netns(&pod);
            let out = invoke(&node, &gwsteer_bin(), &call);
            if out.error_code() != Some(*code) || !out.error_msg().is_some_and(|m| m.contains(msg))
            {
                failures.push(format!("{verb} {what}: want {code} {msg:?}\n{out}"));
            }
        }
        // DEL, with the netns and without (the runtime may have lost it),
        // and with a config that does not validate otherwise either.
        let mut broken = conf.clone();
        broken["steering"][0]["table"] = json!(254);
        for (conf, netns) in [(&conf, true), (&conf, false), (&broken, true)] {
            let mut call = CniCall::new("DEL", id, ifname, conf.clone());
            if netns {
                call = call.netns(&pod);
            }
            let out = invoke(&node, &gwsteer_bin(), &call);
            if !out.success() || !out.stdout_raw.trim().is_empty() {
                failures.push(format!("DEL {what} (netns {netns}): must succeed\n{out}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(gw_rules(&node).is_empty(), "{:?}", gw_rules(&node));
    assert_eq!(
        tree(&state),
        before,
        "DEL past a limit wrote into the state dir"
    );
}
