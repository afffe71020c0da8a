//! One kernel object, one owner (CONTRACT 4), against the real kernel.
//!
//! Address reuse: pod A is steered, its DEL never comes (containerd never
//! sends GC), and pod B gets A's address. B's ADD owns the rules from then
//! on: the late DEL of A, or a GC that no longer lists A, leaves them, and
//! B's replies are still steered; B's DEL removes them.

use crate::support::asym::*;
use crate::support::*;
use serde_json::Value;

const NET: &str = "own";

fn assert_steered(node: &str, pod: &Pod, what: &str) {
    for family in [Family::V4, Family::V6] {
        let addr = match family {
            Family::V4 => (pod.v4, CLUSTER_V4),
            Family::V6 => (pod.v6, CLUSTER_V6),
        };
        assert_eq!(
            sorted(our_rules(node, family)),
            sorted(expected_rules(addr.0, 1000, 100, &[addr.1])),
            "{what}: {family:?} rules"
        );
        assert_eq!(
            table(node, family, 100),
            expected_table_100(family),
            "{what}: {family:?} table 100"
        );
    }
}

/// Pod B, a new container in the sandbox that got A's address: the same
/// interface and addresses (the primary plugin's result), another id.
fn reuse(a: &Pod, cid: &str) -> Pod {
    Pod {
        cid: cid.to_string(),
        cni_args: k8s_cni_args("default", "podb", cid),
        ..a.clone()
    }
}

/// A is steered; A's DEL is lost; B gets A's address and ADDs. Returns
/// (A, B, the conflist).
fn reuse_story(lab: &Lab, t: &Topo) -> (Pod, Pod, Value) {
    let steer = oam_conflist(lab, NET, "1.1.0");
    let a = add_pod(lab, &t.node, &steer, "pod", "ctra", "default");
    assert_steered(&t.node, &a, "A added");
    let b = reuse(&a, "ctrb");
    gwsteer_call(&t.node, &steer, "ADD", &b, Some(&a.result)).expect_ok("ADD of B");
    assert_steered(&t.node, &b, "B added with A's address");
    assert_eq!(
        records(&state_dir(lab), NET),
        vec!["ctra@eth0.json", "ctrb@eth0.json"]
    );
    (a, b, steer)
}

fn assert_b_still_steered(lab: &Lab, t: &Topo, b: &Pod, what: &str) {
    assert_steered(&t.node, b, what);
    let _servers = b.serve();
    assert_answered(
        &format!("{what}: client B"),
        &from_client(&t.clib, b, CLIENT_B_V4, CLIENT_B_V6),
    );
    let _ = lab;
}

/// Failed before owner entries: A's DEL removed B's rules (and B's replies
/// went to router A again).
#[test]
fn a_late_del_of_the_old_pod_leaves_the_new_pods_rules() {
    let lab = Lab::new("ownd");
    let t = Topo::build(&lab);
    let (a, b, steer) = reuse_story(&lab, &t);
    gwsteer_call(&t.node, &steer, "DEL", &a, Some(&a.result)).expect_ok("late DEL of A");
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctrb@eth0.json"]);
    assert_b_still_steered(&lab, &t, &b, "after A's DEL");
    gwsteer_call(&t.node, &steer, "DEL", &b, Some(&b.result)).expect_ok("DEL of B");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    del_pod(&t.node, &steer, &a);
}

/// Failed before owner entries: GC without A removed B's rules.
#[test]
fn gc_of_the_old_pod_leaves_the_new_pods_rules() {
    let lab = Lab::new("owngc");
    let t = Topo::build(&lab);
    let (a, b, steer) = reuse_story(&lab, &t);
    conflist_gc(&t.node, &steer, &[("ctrb", "eth0")]).unwrap_or_else(|f| panic!("GC: {f:?}"));
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctrb@eth0.json"]);
    assert_b_still_steered(&lab, &t, &b, "after GC without A");
    gwsteer_call(&t.node, &steer, "DEL", &b, Some(&b.result)).expect_ok("DEL of B");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    del_pod(&t.node, &steer, &a);
}

/// A second network whose policy takes `table` at `priority`, with its
/// state under `state` (the lab's own state dir, or another one).
fn second_network(lab: &Lab, state: &std::path::Path, table: u32, priority: u32) -> Value {
    let mut policy = source_policy("other", table);
    policy["priority"] = serde_json::json!(priority);
    bridge_conflist(
        "ownb",
        "1.1.0",
        "cni0",
        &[POD_V4, POD_V6],
        &lab.subdir("ipam"),
        gwsteer_plugin(state, serde_json::json!({"steering": [policy]})),
    )
}

/// Pod A of network `own` (table 100, priority 1000) is steered; the same
/// pod's attachment to `second`, run as the chain would, is refused with
/// code 7 and a message containing `names`; A stays steered; once A is gone
/// the other network may have the table.
fn second_network_is_refused(
    tag: &str,
    other_state: Option<&str>,
    table: u32,
    priority: u32,
    names: &[&str],
) {
    let lab = Lab::new(tag);
    let t = Topo::build(&lab);
    let steer = oam_conflist(&lab, NET, "1.1.0");
    let a = add_pod(&lab, &t.node, &steer, "pod", "ctra", "default");
    let state = match other_state {
        Some(dir) => lab.subdir(dir),
        None => state_dir(&lab),
    };
    let second = second_network(&lab, &state, table, priority);
    let b = reuse(&a, "ctrb");
    let refused = gwsteer_call(&t.node, &second, "ADD", &b, Some(&a.result));
    assert_eq!(
        refused.expect_error("ADD of the second network"),
        7,
        "{refused}"
    );
    let msg = refused.error_msg().unwrap_or_default().to_string();
    for name in names {
        assert!(msg.contains(name), "{name:?} not in {msg:?}");
    }
    assert_eq!(records(&state, "ownb"), Vec::<String>::new());
    assert_b_still_steered(&lab, &t, &a, "after the second network was refused");
    // DEL of the refused attachment removes nothing of A's.
    gwsteer_call(&t.node, &second, "DEL", &b, Some(&a.result)).expect_ok("DEL of the refused");
    assert_steered(&t.node, &a, "after the refused attachment's DEL");
    // The claim goes with A's policy group: the other network may use it now.
    gwsteer_call(&t.node, &steer, "DEL", &a, Some(&a.result)).expect_ok("DEL of A");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    gwsteer_call(&t.node, &second, "ADD", &b, Some(&a.result)).expect_ok("ADD once A is gone");
    gwsteer_call(&t.node, &second, "DEL", &b, Some(&a.result)).expect_ok("DEL of the second");
    assert_nothing_left(&t.node, &state, "ownb", &[table]);
    del_pod(&t.node, &steer, &a);
}

/// Failed before: the second network's ADD replaced the first's table
/// route, and its DEL removed it.
#[test]
fn a_table_of_another_network_in_the_same_state_dir_is_refused_naming_it() {
    second_network_is_refused("owntbl", None, 100, 1100, &["table 100", "\"own\""]);
}

#[test]
fn a_rule_priority_of_another_network_is_refused_naming_it() {
    second_network_is_refused("ownprio", None, 101, 1000, &["priority 1000", "\"own\""]);
}

/// Another stateDir shares nothing on disk: the kernel's protocol-211
/// routes in the table give the other network away.
#[test]
fn a_table_used_under_another_state_dir_is_refused() {
    second_network_is_refused(
        "ownsd",
        Some("state2"),
        100,
        1100,
        &["table 100", "another stateDir"],
    );
}

/// `gwsteer <args> --state-dir <lab's>` in the node.
fn cli(t: &Topo, lab: &Lab, args: &[&str]) -> CniOutcome {
    let state = state_dir(lab).display().to_string();
    let mut full = args.to_vec();
    full.extend(["--state-dir", &state]);
    gwsteer_cli(&t.node, &full)
}

/// A policy group's file that no longer reads: `show` and `reconcile`
/// report it (exit 1), and the last DEL still removes the group's routes
/// from the table it claimed. Failed before: the routes of table 100 stayed
/// for good (and `show` failed instead of reporting).
#[test]
fn a_corrupt_policy_group_file_is_reported_and_the_last_del_removes_its_routes() {
    let lab = Lab::new("owncor");
    let t = Topo::build(&lab);
    let steer = oam_conflist(&lab, NET, "1.1.0");
    let a = add_pod(&lab, &t.node, &steer, "pod", "ctra", "default");
    let group = state_dir(&lab).join(NET).join("nodes/steering.oam.json");
    let corrupt = || std::fs::write(&group, b"{\"schema\": 2, \"key\": ").unwrap();

    corrupt();
    let show = cli(&t, &lab, &["show"]);
    assert_eq!(show.exit_code, 1, "{show}");
    assert!(show.stdout_raw.contains("steering.oam.json"), "{show}");
    corrupt();
    let reconcile = cli(&t, &lab, &["reconcile", "--once"]);
    assert_eq!(reconcile.exit_code, 1, "{reconcile}");
    assert!(
        format!("{}{}", reconcile.stdout_raw, reconcile.stderr).contains("steering.oam.json"),
        "{reconcile}"
    );
    // Routes of table 100 are still there (nothing knew them to remove).
    assert_eq!(
        table(&t.node, Family::V4, 100),
        expected_table_100(Family::V4)
    );

    gwsteer_call(&t.node, &steer, "DEL", &a, Some(&a.result)).expect_ok("last DEL");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    // The table's claim went with it: the next pod makes the group afresh.
    let b = reuse(&a, "ctrb");
    gwsteer_call(&t.node, &steer, "ADD", &b, Some(&a.result)).expect_ok("ADD after");
    assert_steered(&t.node, &b, "after a fresh ADD");
    gwsteer_call(&t.node, &steer, "DEL", &b, Some(&a.result)).expect_ok("DEL after");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    del_pod(&t.node, &steer, &a);
}

/// The same for a group made before policies claimed their table (no claim
/// in the node scope): the DEL's config says which table.
#[test]
fn a_corrupt_group_without_claims_is_found_by_the_configs_table() {
    let lab = Lab::new("owncor1");
    let t = Topo::build(&lab);
    let steer = oam_conflist(&lab, NET, "1.1.0");
    let a = add_pod(&lab, &t.node, &steer, "pod", "ctra", "default");
    let node_scope = state_dir(&lab).join(".node");
    for dir in ["holds", "nodes"] {
        for entry in std::fs::read_dir(node_scope.join(dir)).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("claim.") {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
    }
    let group = state_dir(&lab).join(NET).join("nodes/steering.oam.json");
    std::fs::write(&group, b"not json").unwrap();
    gwsteer_call(&t.node, &steer, "DEL", &a, Some(&a.result)).expect_ok("last DEL");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    del_pod(&t.node, &steer, &a);
}
