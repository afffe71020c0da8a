//! `gwsteer explain` in the asymmetric topology (`support::asym`): a pod's reply
//! to client B, arriving on cni0, leaves by table main and router A before
//! steering, and by gwsteer's rule 1000, table 100 and router B after ADD.
//! The `--json` report's structure and the words of the text form are checked,
//! and a packet an `unreachable` rule stops: no route, exit 1, and why.

use crate::support::asym::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "explain-net";

fn explain_json(node: &str, args: &[&str]) -> (i32, Value) {
    let mut full = vec!["explain"];
    full.extend_from_slice(args);
    full.push("--json");
    let out = gwsteer_cli(node, &full);
    let v = serde_json::from_str(out.stdout_raw.trim())
        .unwrap_or_else(|e| panic!("explain --json is not JSON ({e}):\n{out}"));
    (out.exit_code, v)
}

fn explain_text(node: &str, args: &[&str]) -> String {
    let mut full = vec!["explain"];
    full.extend_from_slice(args);
    let out = gwsteer_cli(node, &full);
    assert_eq!(out.exit_code, 0, "{out}");
    out.stdout_raw
}

/// The report's shape: every documented key is there with its JSON type.
fn assert_shape(v: &Value) {
    for key in [
        "query",
        "rule",
        "table",
        "tableName",
        "route",
        "chosen",
        "rulesMatched",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    for key in ["dst", "from", "iif", "mark"] {
        assert!(v["query"].get(key).is_some(), "no query.{key} in {v}");
    }
    for key in [
        "priority",
        "selectors",
        "action",
        "table",
        "protocol",
        "gwsteer",
        "text",
    ] {
        assert!(v["rule"].get(key).is_some(), "no rule.{key} in {v}");
    }
    for key in ["dst", "type", "table", "protocol", "gwsteer", "nexthops"] {
        assert!(v["route"].get(key).is_some(), "no route.{key} in {v}");
    }
    assert!(v["route"]["nexthops"].is_array(), "{v}");
    for key in ["via", "dev", "src"] {
        assert!(v["chosen"].get(key).is_some(), "no chosen.{key} in {v}");
    }
    // Exactly these keys, each with its JSON type.
    assert_keys(
        v,
        &[
            "chosen",
            "error",
            "query",
            "route",
            "rule",
            "rulesMatched",
            "table",
            "tableName",
        ],
    );
    assert_keys(&v["query"], &["dst", "from", "iif", "mark"]);
    assert_keys(
        &v["rule"],
        &[
            "action",
            "gwsteer",
            "priority",
            "protocol",
            "selectors",
            "table",
            "tableName",
            "text",
        ],
    );
    assert_keys(
        &v["route"],
        &[
            "dst",
            "gwsteer",
            "metric",
            "nexthops",
            "protocol",
            "table",
            "tableName",
            "type",
        ],
    );
    assert_keys(&v["chosen"], &["dev", "src", "type", "via"]);
    for hop in v["route"]["nexthops"].as_array().into_iter().flatten() {
        assert_keys(hop, &["dev", "via"]);
    }
    assert!(v["error"].is_null(), "{v}");
    assert!(v["table"].is_u64() && v["tableName"].is_string(), "{v}");
    assert!(
        v["rulesMatched"]
            .as_array()
            .is_some_and(|p| p.iter().all(Value::is_u64)),
        "{v}"
    );
    assert!(
        v["rule"]["priority"].is_u64() && v["rule"]["protocol"].is_u64(),
        "{v}"
    );
    assert!(
        v["rule"]["selectors"].is_object() && v["rule"]["text"].is_string(),
        "{v}"
    );
    assert!(
        v["route"]["type"] == "unicast" && v["chosen"]["type"] == "unicast",
        "{v}"
    );
    assert!(
        v["route"]["metric"].is_null() || v["route"]["metric"].is_u64(),
        "{v}"
    );
}

fn assert_keys(v: &Value, want: &[&str]) {
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, want, "{v}");
}

#[test]
fn explain_names_main_and_router_a_before_and_gwsteer_table_100_and_router_b_after() {
    let lab = Lab::new("explain");
    let t = Topo::build(&lab);
    let plain = conflist(&lab, NET, "1.0.0", None);
    let steer = oam_conflist(&lab, NET, "1.0.0");

    // Before steering: the reply to client B takes the node's default route.
    let pod = add_pod(&lab, &t.node, &plain, "pod", "ctr1", "default");
    for (pod_ip, client, rtr_a) in [
        (pod.v4.to_string(), CLIENT_B_V4, RTR_A_V4),
        (pod.v6.to_string(), CLIENT_B_V6, RTR_A_V6),
    ] {
        let (code, v) = explain_json(&t.node, &[client, "--from", &pod_ip, "--iif", "cni0"]);
        assert_eq!(code, 0, "{v}");
        assert_shape(&v);
        assert_eq!(v["query"]["dst"], client);
        assert_eq!(v["query"]["from"], pod_ip.as_str());
        assert_eq!(v["query"]["iif"], "cni0");
        assert_eq!(v["table"], 254, "{v}");
        assert_eq!(v["tableName"], "main", "{v}");
        assert_eq!(v["rule"]["table"], 254, "{v}");
        assert_eq!(v["rule"]["gwsteer"], false, "{v}");
        assert_eq!(v["route"]["dst"], "default", "{v}");
        assert_eq!(v["route"]["gwsteer"], false, "{v}");
        assert_eq!(
            v["route"]["nexthops"],
            json!([{"via": rtr_a, "dev": "eth-a"}]),
            "{v}"
        );
        assert_eq!(v["chosen"]["via"], rtr_a, "{v}");
        assert_eq!(v["chosen"]["dev"], "eth-a", "{v}");
    }
    let text = explain_text(
        &t.node,
        &[CLIENT_B_V4, "--from", &pod.v4.to_string(), "--iif", "cni0"],
    );
    assert!(text.contains("table    main"), "{text}");
    assert!(text.contains("not gwsteer's"), "{text}");
    assert!(
        text.contains(&format!("chosen   via {RTR_A_V4} dev eth-a")),
        "{text}"
    );
    del_pod(&t.node, &plain, &pod);

    // After ADD: gwsteer's rule 1000 sends it to table 100 and router B.
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    for (pod_ip, client, rtr_b) in [
        (pod.v4.to_string(), CLIENT_B_V4, RTR_B_V4),
        (pod.v6.to_string(), CLIENT_B_V6, RTR_B_V6),
    ] {
        let (code, v) = explain_json(&t.node, &[client, "--from", &pod_ip, "--iif", "cni0"]);
        assert_eq!(code, 0, "{v}");
        assert_shape(&v);
        assert_eq!(v["table"], 100, "{v}");
        assert_eq!(v["rule"]["priority"], 1000, "{v}");
        assert_eq!(v["rule"]["gwsteer"], true, "{v}");
        assert_eq!(v["rule"]["protocol"], 211, "{v}");
        assert_eq!(v["rule"]["table"], 100, "{v}");
        assert_eq!(v["rule"]["action"], "totable", "{v}");
        let host = if client.contains(':') { 128 } else { 32 };
        assert_eq!(
            v["rule"]["selectors"],
            json!({"from": format!("{pod_ip}/{host}")}),
            "{v}"
        );
        assert_eq!(v["route"]["protocol"], 211, "{v}");
        assert_eq!(v["route"]["gwsteer"], true, "{v}");
        assert_eq!(
            v["route"]["nexthops"],
            json!([{"via": rtr_b, "dev": "eth-b"}]),
            "{v}"
        );
        assert_eq!(v["chosen"]["via"], rtr_b, "{v}");
        assert_eq!(v["chosen"]["dev"], "eth-b", "{v}");

        // To the cluster CIDR the exclusion rule (priority 999) sends it to
        // main: explain names that rule, still gwsteer's.
        let peer = if client.contains(':') {
            "fd00:244:0:2::5"
        } else {
            "10.244.2.5"
        };
        let (_, v) = explain_json(&t.node, &[peer, "--from", &pod_ip, "--iif", "cni0"]);
        assert_eq!(v["rule"]["priority"], 999, "{v}");
        assert_eq!(v["rule"]["gwsteer"], true, "{v}");
        assert_eq!(v["tableName"], "main", "{v}");
    }
    let text = explain_text(
        &t.node,
        &[CLIENT_B_V4, "--from", &pod.v4.to_string(), "--iif", "cni0"],
    );
    assert!(
        text.contains(&format!("rule     1000: from {} lookup 100", pod.v4)),
        "{text}"
    );
    assert!(text.contains("gwsteer's (protocol 211)"), "{text}");
    assert!(text.contains("table    100"), "{text}");
    assert!(
        text.contains(&format!("chosen   via {RTR_B_V4} dev eth-b")),
        "{text}"
    );

    // Usage errors exit 2; no route at all exits 1 and says why.
    assert_eq!(gwsteer_cli(&t.node, &["explain"]).exit_code, 2);
    assert_eq!(
        gwsteer_cli(&t.node, &["explain", "10.0.0.1", "--mark", "zz"]).exit_code,
        2
    );
    lab.ip(
        &t.node,
        [
            "rule",
            "add",
            "pref",
            "50",
            "to",
            "192.0.2.0/24",
            "unreachable",
        ],
    );
    let (code, v) = explain_json(&t.node, &["192.0.2.1"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(
        v,
        json!({
            "chosen": null,
            "error": "Network is unreachable (os error 101)",
            "query": {"dst": "192.0.2.1", "from": null, "iif": null, "mark": null},
            "route": null,
            "rule": {
                "action": "unreachable",
                "gwsteer": false,
                "priority": 50,
                "protocol": 0,
                "selectors": {"to": "192.0.2.0/24"},
                "table": 0,
                "tableName": "0",
                "text": "from all to 192.0.2.0/24 unreachable",
            },
            "rulesMatched": v["rulesMatched"],
            "table": null,
            "tableName": null,
        })
    );
    assert_eq!(v["rulesMatched"][0], 0, "{v}");
    assert!(
        v["rulesMatched"].as_array().unwrap().contains(&json!(50)),
        "{v}"
    );
    let out = gwsteer_cli(&t.node, &["explain", "192.0.2.1"]);
    assert_eq!(out.exit_code, 1, "{out}");
    assert_eq!(
        out.stdout_raw,
        "packet to 192.0.2.1 sent by the node\n  \
         rule     50: from all to 192.0.2.0/24 unreachable  [not gwsteer's (protocol 0)]\n  \
         route    none: Network is unreachable (os error 101)\n"
    );
    del_pod(&t.node, &steer, &pod);
}
