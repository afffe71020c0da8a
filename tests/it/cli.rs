//! The operator CLI against a real node namespace: `show [--json]` marks
//! each recorded object present, MISSING or DRIFTED (exit 1 when anything
//! is not present); `cleanup --dry-run` changes nothing; `cleanup` removes
//! every gwsteer rule, route and state of every network — orphan protocol-211
//! objects without a record included — restores the sysctls gwsteer set,
//! and leaves everything that is not gwsteer's alone; usage errors exit 2.

use crate::support::reliability::*;
use crate::support::*;
use serde_json::{Value, json};

fn steering(table: u32, priority: u32) -> Value {
    json!([multipath_policy("oam", table, Some(priority), CLUSTER)])
}

fn show_json(node: &Node) -> (i32, Value) {
    let out = node.cli(&["show", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout_raw)
        .unwrap_or_else(|e| panic!("show --json is not JSON ({e}):\n{out}"));
    (out.exit_code, v)
}

/// `{object text: state}` of every object of every attachment and group.
fn states(show: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in show["networks"].as_array().unwrap() {
        for a in n["attachments"].as_array().unwrap() {
            for o in a["objects"].as_array().unwrap() {
                out.push((
                    o["object"].as_str().unwrap().to_string(),
                    o["state"].as_str().unwrap().to_string(),
                ));
            }
        }
        for g in n["nodeGroups"].as_array().unwrap() {
            for o in g["objects"].as_array().unwrap() {
                out.push((
                    o["object"].as_str().unwrap().to_string(),
                    o["state"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn show_marks_each_object_present_missing_or_drifted() {
    let node = Node::new("clishow");
    let (code, v) = show_json(&node);
    assert_eq!(code, 0);
    assert_eq!(v, json!({"networks": [], "problems": 0}));

    let config = node.config("show-net", steering(100, 1000));
    let prev = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    assert!(node.add("c1", &config, &prev).success());
    let (code, v) = show_json(&node);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["problems"], 0);
    let net = &v["networks"][0];
    assert_eq!(net["network"], "show-net");
    let att = &net["attachments"][0];
    assert_eq!(att["containerID"], "c1");
    assert_eq!(att["ifname"], "eth0");
    assert_eq!(att["pod"], "default/c1");
    assert_eq!(att["objects"].as_array().unwrap().len(), 4);
    let groups: Vec<&str> = net["nodeGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        ["steering.oam", "sysctl.net.ipv4.fib_multipath_use_neigh"]
    );
    assert_eq!(net["nodeGroups"][0]["holders"], 1);
    let all = states(&v);
    assert_eq!(all.len(), 4 + 2 + 1);
    assert!(all.iter().all(|(_, s)| s == "present"), "{all:?}");

    // One rule gone, one route changed.
    node.lab.ip(
        &node.ns,
        [
            "rule",
            "del",
            "priority",
            "1000",
            "from",
            "10.244.1.5",
            "table",
            "100",
        ],
    );
    node.lab.ip(
        &node.ns,
        [
            "-6", "route", "replace", "default", "via", GW6_B, "dev", "eth1", "table", "100",
        ],
    );
    let (code, v) = show_json(&node);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["problems"], 2);
    let bad: Vec<(String, String)> = states(&v)
        .into_iter()
        .filter(|(_, s)| s != "present")
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(
        bad[0],
        (
            "inet rule 1000: from 10.244.1.5 lookup 100".to_string(),
            "MISSING".to_string()
        )
    );
    assert!(
        bad[1].0 == "inet6 route default table 100 via fd00:192::fe dev eth1"
            && bad[1].1.starts_with("DRIFTED (")
            && bad[1].1.contains("via fd00:192::fd"),
        "{bad:?}"
    );
    let text = node.cli(&["show"]);
    assert_eq!(text.exit_code, 1);
    // Aligned columns: NETWORK ATTACHMENT POD OBJECT STATE, the state last.
    let lines: Vec<&str> = text.stdout_raw.lines().collect();
    assert!(
        lines[0].split_whitespace().collect::<Vec<_>>()
            == ["NETWORK", "ATTACHMENT", "POD", "OBJECT", "STATE"],
        "{text}"
    );
    let state_col = lines[0].find("STATE").unwrap();
    let object_col = lines[0].find("OBJECT").unwrap();
    let pod_col = lines[0].find("POD").unwrap();
    let att_col = lines[0].find("ATTACHMENT").unwrap();
    let row = lines
        .iter()
        .find(|l| l.contains("inet rule 1000: from 10.244.1.5 lookup 100"))
        .unwrap_or_else(|| panic!("no row for the rule:\n{text}"));
    assert!(row.starts_with("show-net "), "{row}");
    assert!(row[att_col..].starts_with("c1/eth0 "), "{row}");
    assert!(!row[pod_col..].starts_with(' '), "{row}");
    assert!(
        row[object_col..].starts_with("inet rule 1000: from 10.244.1.5 lookup 100 "),
        "{row}"
    );
    assert_eq!(&row[state_col..], "MISSING", "{row}");
    for l in &lines[1..] {
        if l.starts_with("show-net ") {
            assert!(
                l.len() > state_col,
                "every row reaches the STATE column: {l}"
            );
        }
    }

    assert!(node.cli(&["reconcile", "--once"]).exit_code == 1);
    let (code, _) = show_json(&node);
    assert_eq!(code, 0);
    assert!(node.del("c1", &config, &prev).success());
}

#[test]
fn cleanup_removes_everything_of_gwsteer_and_nothing_else() {
    let node = Node::new("clicleanup");
    let a = node.config("net-a", steering(100, 1000));
    let b = node.config("net-b", steering(200, 2000));
    let pa = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    let pb = prev_result("10.244.2", "fd00:244:0:2", 6, &node.pod_netns);
    // A connmark network too: firewall objects, a fwmark rule per family.
    let c = node.config("net-c", connmark_lb());
    let pc = prev_result("10.244.3", "fd00:244:0:3", 7, &node.pod_netns);
    assert!(node.add("ca", &a, &pa).success());
    assert!(node.add("cb", &b, &pb).success());
    let out = node.add("cc", &c, &pc);
    assert!(out.success(), "{out}");
    assert_eq!(node.sysctl(MULTIPATH_SYSCTL), "1");
    assert_eq!(node.sysctl(SRC_VALID_MARK), "1");
    assert_ne!(nft_ruleset(&node.ns), json!({"nftables": []}));
    let tables = [100, 160, 200, 300, 400];
    // Someone else's: a table, a rule to it, a route in main.
    for args in FOREIGN {
        node.lab.ip(&node.ns, args);
    }
    let foreign_rules = node.all_rules();
    let foreign_main = routes(&node.ns, Family::V4, "main");
    // gwsteer's, with no record (lost state): a rule, and a route in the
    // table it points at.
    for args in [
        &[
            "rule",
            "add",
            "priority",
            "1000",
            "from",
            "10.244.1.77",
            "table",
            "400",
            "protocol",
            "211",
        ][..],
        &[
            "route", "add", "default", "via", GW4_A, "table", "400", "protocol", "211",
        ],
    ] {
        node.lab.ip(&node.ns, args);
    }
    assert_eq!(node.gw_rules().len(), 4 + 4 + 2 + 1);

    let before = node.snapshot(&tables);
    let dry = node.cli(&["cleanup", "--dry-run"]);
    assert_eq!(dry.exit_code, 0, "{dry}");
    for says in [
        "would remove attachment ca/eth0 of net-a",
        "would remove attachment cb/eth0 of net-b",
        "would remove group steering.oam of net-a",
        "would remove leftover inet rule 1000: from 10.244.1.77 lookup 400",
    ] {
        assert!(dry.stdout_raw.contains(says), "{says:?}:\n{dry}");
    }
    assert_state(
        "cleanup --dry-run",
        &before,
        &node.snapshot(&tables),
        &|| dry.to_string(),
    );

    let out = node.cli(&["cleanup"]);
    assert_eq!(out.exit_code, 0, "{out}");
    assert!(node.gw_rules().is_empty(), "{:?}", node.gw_rules());
    for t in [100, 160, 200, 400] {
        assert_eq!(node.table(t), Vec::<Value>::new(), "table {t}:\n{out}");
    }
    assert_eq!(node.sysctl(MULTIPATH_SYSCTL), "0", "sysctl restored");
    assert_eq!(node.sysctl(SRC_VALID_MARK), "0", "sysctl restored");
    assert_eq!(
        nft_ruleset(&node.ns),
        json!({"nftables": []}),
        "firewall left"
    );
    assert_eq!(node.all_rules(), {
        // What was there before gwsteer's went: only the foreign rule.
        let mut v = foreign_rules.clone();
        for fam in ["4", "6"] {
            v[fam]
                .as_array_mut()
                .unwrap()
                .retain(|r| !matches!(r["protocol"].as_str(), Some("211" | "gwsteer")));
        }
        v
    });
    assert_eq!(node.table(300).len(), 1);
    assert_eq!(routes(&node.ns, Family::V4, "main"), foreign_main);
    assert_eq!(
        std::fs::read_dir(&node.state)
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "state left: {:?}",
        store_snapshot(&node.state)
    );
    let (code, v) = show_json(&node);
    assert_eq!((code, v["networks"].clone()), (0, json!([])));
    // A second cleanup finds nothing and still succeeds.
    let again = node.cli(&["cleanup"]);
    assert_eq!(again.exit_code, 0, "{again}");
    assert_eq!(again.stdout_raw, "", "{again}");
}

#[test]
fn usage_errors_exit_2() {
    let node = Node::new("cliusage");
    for args in [
        &["reconcile", "--once", "--interval", "5s"][..],
        &["reconcile", "--interval", "5x"],
        &["reconcile", "--interval", "10ms"],
        &["reconcile", "--interval"],
        &["reconcile", "--bogus"],
        &["no-such-command"],
    ] {
        let out = node.cli(args);
        assert_eq!(out.exit_code, 2, "{args:?}:\n{out}");
        assert!(out.stdout_raw.is_empty(), "{args:?}: usage goes to stderr");
    }
    let out = node.cli(&["reconcile", "--once"]);
    assert_eq!(
        out.exit_code, 0,
        "no state at all is nothing to fix:\n{out}"
    );
}
