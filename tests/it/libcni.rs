//! The steering conflist (bridge + host-local + gwsteer `source`) run by
//! Debian's libcni, the library containerd, CRI-O and podman use, for
//! cniVersion 0.3.1, 0.4.0 and 1.0.0: ADD (client B is answered), CHECK
//! (passes, then fails naming a rule removed by hand), DEL (nothing left).
//! GC and STATUS (CNI 1.1.0, beyond Debian's libcni) by invoking gwsteer
//! directly with the spec's environment and stdin.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::support::asym::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "steer";

/// A conflist file for libcni and the per-test cache dir.
struct Files {
    conflist: PathBuf,
    cache: PathBuf,
}

fn files(lab: &Lab, conf: &Value) -> Files {
    let conflist = lab.tmpdir().join("conflist.json");
    write_json(&conflist, conf);
    Files {
        conflist,
        cache: lab.subdir("cni-cache"),
    }
}

fn run(node: &str, f: &Files, op: &str, pod_ns: &str, cid: &str, args: &str) -> CniOutcome {
    libcni(
        node,
        op,
        &f.conflist,
        &netns_path(pod_ns),
        cid,
        "eth0",
        Some(args),
        &f.cache,
    )
}

fn rules_of(family: Family, v4: IpAddr, v6: IpAddr) -> Vec<Value> {
    match family {
        Family::V4 => expected_rules(v4, 1000, 100, &[CLUSTER_V4]),
        Family::V6 => expected_rules(v6, 1000, 100, &[CLUSTER_V6]),
    }
}

fn libcni_cycle(tag: &str, version: &str) {
    let lab = Lab::new(tag);
    let t = Topo::build(&lab);
    let conf = oam_conflist(&lab, NET, version);
    let f = files(&lab, &conf);
    let pod_ns = lab.netns("pod");
    let args = k8s_cni_args("default", "web-0", "ctr1");

    // ADD: the result is in the list's version, and client B is answered.
    let result = run(&t.node, &f, "add", &pod_ns, "ctr1", &args).expect_ok("libcni ADD");
    assert_eq!(result["cniVersion"], version, "{result}");
    let (v4, v6) = result_addrs(&result);
    for ip in result["ips"].as_array().unwrap() {
        // Before 1.0.0 every ips[] entry carries its version.
        let want = match version {
            "1.0.0" => None,
            _ if ip["address"].as_str().unwrap().contains(':') => Some("6"),
            _ => Some("4"),
        };
        assert_eq!(ip["version"].as_str(), want, "{version}: {ip}");
    }
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            our_rules(&t.node, family),
            rules_of(family, v4, v6),
            "{family:?}"
        );
        assert_eq!(table(&t.node, family, 100), expected_table_100(family));
    }
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctr1@eth0.json"]);
    {
        let _s4 = TcpServer::start(&pod_ns, SocketAddr::new(v4, 8080));
        let _s6 = TcpServer::start(&pod_ns, SocketAddr::new(v6, 8080));
        assert_answered(
            &format!("libcni {version}: client B"),
            &[
                (
                    t.clib.as_str(),
                    SocketAddr::new(v4, 8080),
                    addr(CLIENT_B_V4),
                ),
                (
                    t.clib.as_str(),
                    SocketAddr::new(v6, 8080),
                    addr(CLIENT_B_V6),
                ),
            ],
        );
    }

    // CHECK: libcni has it from 0.4.0 on.
    let checked = run(&t.node, &f, "check", &pod_ns, "ctr1", &args);
    if version == "0.3.1" {
        assert!(
            !checked.success(),
            "libcni refuses CHECK at 0.3.1: {checked}"
        );
    } else {
        checked.expect_ok(&format!("libcni CHECK {version}"));
        // One steering rule removed by hand: CHECK fails and names it.
        let (v4s, rule) = (
            v4.to_string(),
            format!("inet rule 1000: from {v4} lookup 100"),
        );
        ip_del_rule(&t.node, &["from", &v4s, "priority", "1000", "table", "100"]);
        assert!(
            !our_rules(&t.node, Family::V4)
                .iter()
                .any(|r| r["priority"] == 1000),
            "the rule is gone"
        );
        let checked = run(&t.node, &f, "check", &pod_ns, "ctr1", &args);
        let code = checked.expect_error(&format!("libcni CHECK {version} after ip rule del"));
        assert!(code >= 100, "plugin error code expected: {checked}");
        let msg = checked.error_msg().unwrap_or_default();
        assert!(msg.contains(&rule), "CHECK must name {rule:?}: {checked}");
        // Only that one: the rules still in place are not reported.
        assert!(
            !msg.contains("rule 999") && !msg.contains("inet6"),
            "CHECK reports intact objects: {msg}"
        );
    }

    // DEL: nothing of gwsteer's is left; a second DEL is fine too.
    run(&t.node, &f, "del", &pod_ns, "ctr1", &args).expect_ok("libcni DEL");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    assert!(
        try_ip(&pod_ns, ["link", "show", "dev", "eth0"]).is_err(),
        "bridge DEL ran"
    );
    run(&t.node, &f, "del", &pod_ns, "ctr1", &args).expect_ok("libcni second DEL");
}

fn ip_del_rule(ns: &str, selector: &[&str]) {
    let mut args = vec!["rule", "del"];
    args.extend_from_slice(selector);
    crate::support::ip(ns, args);
}

#[test]
fn libcni_runs_the_steering_conflist_0_3_1() {
    libcni_cycle("lcni031", "0.3.1");
}

#[test]
fn libcni_runs_the_steering_conflist_0_4_0() {
    libcni_cycle("lcni040", "0.4.0");
}

#[test]
fn libcni_runs_the_steering_conflist_1_0_0() {
    libcni_cycle("lcni100", "1.0.0");
}

/// gwsteer's plugin config from `conf` at cniVersion 1.1.0, as a 1.1.0
/// runtime sends it for GC and STATUS.
fn config_1_1(conf: &Value) -> Value {
    let mut c = conf.clone();
    c["cniVersion"] = json!("1.1.0");
    plugin_config(&c, 1, None).0
}

fn gwsteer(node: &str, command: &str, config: Value) -> CniOutcome {
    invoke(node, &gwsteer_bin(), &CniCall::new(command, "", "", config))
}

/// Two pods ADDed by libcni (1.0.0); GC at 1.1.0 with only the first in
/// `cni.dev/valid-attachments` removes the second's rules and record (its
/// traffic from client B stops) and keeps the first's; STATUS succeeds;
/// GC with an empty list removes everything, table routes included.
#[test]
fn gc_and_status_by_direct_invocation() {
    let lab = Lab::new("lcnigc");
    let t = Topo::build(&lab);
    let conf = oam_conflist(&lab, NET, "1.0.0");
    let f = files(&lab, &conf);
    let mut pods = Vec::new();
    for (name, cid) in [("pod1", "ctr1"), ("pod2", "ctr2")] {
        let ns = lab.netns(name);
        let args = k8s_cni_args("default", name, cid);
        let result = run(&t.node, &f, "add", &ns, cid, &args).expect_ok("libcni ADD");
        let (v4, v6) = result_addrs(&result);
        pods.push((ns, cid, args, v4, v6));
    }
    let rules = |pods: &[&(String, &str, String, _, _)], family| {
        sorted(
            pods.iter()
                .flat_map(|p| rules_of(family, p.3, p.4))
                .collect(),
        )
    };
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            sorted(our_rules(&t.node, family)),
            rules(&[&pods[0], &pods[1]], family)
        );
    }
    assert_eq!(
        records(&state_dir(&lab), NET),
        vec!["ctr1@eth0.json", "ctr2@eth0.json"]
    );

    let status = gwsteer(&t.node, "STATUS", config_1_1(&conf));
    assert_eq!(
        status.expect_ok("STATUS"),
        Value::Null,
        "STATUS prints nothing"
    );
    // STATUS needs 1.1.0: an older config gets "incompatible version".
    let old = plugin_config(&conf, 1, None).0;
    assert_eq!(
        gwsteer(&t.node, "STATUS", old).expect_error("STATUS at 1.0.0"),
        1
    );

    let mut gc = config_1_1(&conf);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr1", "ifname": "eth0"}]);
    gwsteer(&t.node, "GC", gc).expect_ok("GC keeping ctr1");
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            sorted(our_rules(&t.node, family)),
            rules(&[&pods[0]], family),
            "{family:?} rules after GC"
        );
        assert_eq!(
            table(&t.node, family, 100),
            expected_table_100(family),
            "{family:?} table 100 after GC"
        );
    }
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctr1@eth0.json"]);
    {
        let servers: Vec<_> = pods
            .iter()
            .flat_map(|p| {
                [
                    TcpServer::start(&p.0, SocketAddr::new(p.3, 8080)),
                    TcpServer::start(&p.0, SocketAddr::new(p.4, 8080)),
                ]
            })
            .collect();
        let [a4, a6, b4, b6] = [0, 1, 2, 3].map(|i| servers[i].addr());
        assert_answered(
            "kept pod",
            &[
                (t.clib.as_str(), a4, addr(CLIENT_B_V4)),
                (t.clib.as_str(), a6, addr(CLIENT_B_V6)),
            ],
        );
        assert_unanswered(
            "collected pod",
            &[(t.clib.as_str(), b4), (t.clib.as_str(), b6)],
        );
    }

    let mut gc = config_1_1(&conf);
    gc["cni.dev/valid-attachments"] = json!([]);
    gwsteer(&t.node, "GC", gc).expect_ok("GC of everything");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);

    // The runtime's DELs afterwards find nothing of gwsteer's: success.
    for (ns, cid, args, _, _) in &pods {
        run(&t.node, &f, "del", ns, cid, args).expect_ok("libcni DEL after GC");
    }
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
}
