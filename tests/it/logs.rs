//! What gwsteer writes to its `logFile`: one info line per ADD and per DEL,
//! naming the container id, the interface, the pod, what was done and how
//! long it took; at `logLevel` debug, one line per kernel change (each rule
//! and route made on ADD and removed on DEL); at info, none of those.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::asym::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "lognet";

fn lines_of<'a>(log: &'a str, level: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(level))
        .collect()
}

/// The asymmetric topology and the `oam` source-steering conflist, gwsteer
/// logging at `level` to the returned file.
fn logging(tag: &str, level: &str) -> (Lab, Topo, PathBuf, Value) {
    let lab = Lab::new(tag);
    let t = Topo::build(&lab);
    let log = lab.tmpdir().join("gwsteer.log");
    let conf = conflist(
        &lab,
        NET,
        "1.0.0",
        Some(json!({
            "steering": [source_policy("oam", 100)],
            "logFile": log,
            "logLevel": level,
        })),
    );
    (lab, t, log, conf)
}

fn run(tag: &str, level: &str) -> (String, Pod) {
    let (lab, t, log, conf) = logging(tag, level);
    let pod = add_pod(&lab, &t.node, &conf, "pod", "ctr1", "shop");
    del_pod(&t.node, &conf, &pod);
    (read(&log), pod)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// "… in N µs" at the end of a line.
fn has_duration(line: &str) -> bool {
    let Some(rest) = line.strip_suffix(" µs") else {
        return false;
    };
    let n = rest.rsplit(' ').next().unwrap_or("");
    !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && rest.ends_with(&format!(" in {n}"))
}

/// The text after `"<verb> ctr1/eth0 … : <word> "` of the debug lines.
fn changes<'a>(debug: &[&'a str], verb: &str, word: &str) -> Vec<&'a str> {
    changes_of(debug, verb, "ctr1", word)
}

/// The text after `"<verb> <cid>/eth0 … : <word> "` of the debug lines.
fn changes_of<'a>(debug: &[&'a str], verb: &str, cid: &str, word: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = debug
        .iter()
        .filter(|l| l.contains(&format!(" {verb} {cid}/eth0 ")))
        .filter_map(|l| l.split_once(&format!(": {word} ")).map(|(_, what)| what))
        .map(|what| what.split(" (last holder").next().unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn debug_log_has_one_info_line_per_verb_and_every_kernel_change() {
    let (log, pod) = run("logdbg", "debug");
    let info = lines_of(&log, "INFO");
    assert_eq!(info.len(), 2, "one info line per ADD and DEL:\n{log}");
    let (add, del) = (info[0], info[1]);
    for (line, verb, did) in [
        (
            add,
            "ADD",
            "steered 2 address(es): 4 object(s), groups [steering.oam]",
        ),
        (del, "DEL", "removed 4 object(s), released [steering.oam]"),
    ] {
        assert!(
            line.contains(&format!(" {verb} ctr1/eth0 net={NET} pod=shop/pod: ")),
            "{line}"
        );
        assert!(line.contains(did), "{line}");
        assert!(has_duration(line), "a duration: {line}");
    }

    // Every kernel change at debug: the two table routes and the four rules
    // made on ADD are the ones removed on DEL.
    let debug = lines_of(&log, "DEBUG");
    let made = changes(&debug, "ADD", "ensure");
    let removed = changes(&debug, "DEL", "remove");
    let mut want = vec![
        format!("inet route default table 100 via {RTR_B_V4} dev eth-b"),
        format!("inet6 route default table 100 via {RTR_B_V6} dev eth-b"),
        format!("inet rule 999: from {} to {CLUSTER_V4} lookup main", pod.v4),
        format!("inet rule 1000: from {} lookup 100", pod.v4),
        format!(
            "inet6 rule 999: from {} to {CLUSTER_V6} lookup main",
            pod.v6
        ),
        format!("inet6 rule 1000: from {} lookup 100", pod.v6),
    ];
    want.sort();
    assert_eq!(made, want, "{log}");
    assert_eq!(removed, want, "{log}");
}

#[test]
fn info_log_has_the_verbs_and_no_kernel_detail() {
    let (log, _) = run("loginfo", "info");
    assert!(lines_of(&log, "DEBUG").is_empty(), "{log}");
    let info = lines_of(&log, "INFO");
    assert_eq!(info.len(), 2, "{log}");
    assert!(
        info[0].contains(" ADD ctr1/eth0 ") && has_duration(info[0]),
        "{log}"
    );
    assert!(
        info[1].contains(" DEL ctr1/eth0 ") && has_duration(info[1]),
        "{log}"
    );
}

/// A policy's table routes are made by the first pod's ADD. Later ADDs read
/// the owned table back (cost independent of the pods on the node) and
/// replace a route only when it is missing or drifted: no kernel change for
/// what is right, a repair for what is not.
#[test]
fn later_adds_leave_right_table_routes_alone_and_repair_drifted_ones() {
    let (lab, t, log, conf) = logging("logtbl", "debug");
    let route4 = format!("inet route default table 100 via {RTR_B_V4} dev eth-b");
    let route6 = format!("inet6 route default table 100 via {RTR_B_V6} dev eth-b");
    let routes_of = |debug: &[&str], cid: &str, word: &str| -> Vec<String> {
        changes_of(debug, "ADD", cid, word)
            .into_iter()
            .filter(|c| c.contains(" route "))
            .map(String::from)
            .collect()
    };

    let p1 = add_pod(&lab, &t.node, &conf, "pod1", "ctr1", "shop");
    let p2 = add_pod(&lab, &t.node, &conf, "pod2", "ctr2", "shop");
    let text = read(&log);
    let debug = lines_of(&text, "DEBUG");
    assert_eq!(
        routes_of(&debug, "ctr1", "ensure"),
        vec![route4.clone(), route6.clone()],
        "{text}"
    );
    assert!(routes_of(&debug, "ctr2", "ensure").is_empty(), "{text}");
    assert_eq!(
        routes_of(&debug, "ctr2", "present"),
        vec![route4.clone(), route6.clone()],
        "{text}"
    );

    // Drift: the IPv4 table route is now someone else's (proto static), as a
    // hand edit leaves it.
    ip(
        &t.node,
        [
            "route", "replace", "default", "via", RTR_B_V4, "dev", "eth-b", "table", "100",
            "metric", "0", "proto", "static",
        ],
    );
    let p3 = add_pod(&lab, &t.node, &conf, "pod3", "ctr3", "shop");
    let text = read(&log);
    let debug = lines_of(&text, "DEBUG");
    assert_eq!(routes_of(&debug, "ctr3", "ensure"), vec![route4], "{text}");
    assert_eq!(routes_of(&debug, "ctr3", "present"), vec![route6], "{text}");
    for family in [Family::V4, Family::V6] {
        assert_eq!(table(&t.node, family, 100), expected_table_100(family));
    }
    for pod in [&p1, &p2, &p3] {
        del_pod(&t.node, &conf, pod);
    }
    for family in [Family::V4, Family::V6] {
        assert!(table(&t.node, family, 100).is_empty());
        assert!(our_rules(&t.node, family).is_empty());
    }
}

/// Without `logFile`, stderr (which containerd copies raw into its journal)
/// carries warnings and errors only: nothing for an ADD or DEL that went
/// well, the error line for one that did not.
#[test]
fn without_a_log_file_stderr_has_warnings_and_errors_only() {
    let lab = Lab::new("logstderr");
    let t = Topo::build(&lab);
    let primary = conflist(&lab, NET, "1.0.0", None);
    let pod_ns = lab.netns("pod");
    let result = conflist_add(
        &t.node,
        &primary,
        "ctr1",
        &netns_path(&pod_ns),
        "eth0",
        None,
    )
    .unwrap_or_else(|o| panic!("primary ADD: {o}"));
    let plugin = |policy: Value| {
        let mut c = gwsteer_plugin(&state_dir(&lab), json!({"steering": [policy]}));
        c["cniVersion"] = json!("1.0.0");
        c["name"] = json!(NET);
        c["prevResult"] = result.clone();
        c
    };
    let call = |verb: &str, conf: Value| {
        invoke(
            &t.node,
            &gwsteer_bin(),
            &CniCall::new(verb, "ctr1", "eth0", conf).netns(&netns_path(&pod_ns)),
        )
    };
    let add = call("ADD", plugin(source_policy("oam", 100)));
    assert!(add.success(), "{add}");
    assert_eq!(add.stderr, "", "an ADD that went well wrote to stderr");
    let del = call("DEL", plugin(source_policy("oam", 100)));
    assert!(del.success(), "{del}");
    assert_eq!(del.stderr, "", "a DEL that went well wrote to stderr");
    // A gateway the node cannot reach: the ADD fails, and says so there.
    let mut bad = source_policy("oam", 100);
    bad["gateways"] = json!([{"via": "203.0.113.99"}]);
    let failed = call("ADD", plugin(bad));
    assert!(!failed.success(), "{failed}");
    let errors: Vec<&str> = failed
        .stderr
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("ERROR"))
        .collect();
    assert!(!errors.is_empty(), "no ERROR line on stderr:\n{failed}");
    assert!(
        !failed
            .stderr
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("INFO")),
        "{failed}"
    );
}
