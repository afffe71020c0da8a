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
