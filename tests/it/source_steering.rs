//! `source` steering (CONTRACT 3.1) against the real kernel: the asymmetric
//! return path of `tests/demo.sh` fixed with real traffic (IPv4 and IPv6),
//! exactly what is made read back as structures, node-level table routes,
//! pod selection, re-ADD, and the ADD result. Pods are attached by Debian's
//! reference `bridge` + `host-local`, chained before gwsteer, through the
//! harness's conflist runner.

use std::net::IpAddr;

use crate::support::asym::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "steer";

fn steering(policies: Value) -> Option<Value> {
    Some(json!({ "steering": policies }))
}

/// The `family` rules [`source_policy`] (cluster CIDR excluded) makes for
/// `pods` at `priority` with `table`, sorted.
fn expected_source_rules(family: Family, pods: &[&Pod], priority: u32, table: u32) -> Vec<Value> {
    let mut out = Vec::new();
    for pod in pods {
        let (addr, cluster) = match family {
            Family::V4 => (pod.v4, CLUSTER_V4),
            Family::V6 => (pod.v6, CLUSTER_V6),
        };
        out.extend(expected_rules(addr, priority, table, &[cluster]));
    }
    sorted(out)
}

fn assert_steered(node: &str, pods: &[&Pod], priority: u32, table: u32, what: &str) {
    assert_steered_by(Scope::Pod, node, pods, priority, table, what)
}

/// How a policy names the steered pods (its `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Pod,
    Subnet,
}

/// [`source_policy`] (`oam`, table 100) with `scope`.
fn oam_conflist_scoped(lab: &Lab, scope: Scope) -> Value {
    let mut policy = source_policy("oam", 100);
    if scope == Scope::Subnet {
        policy["scope"] = json!("subnet");
    }
    conflist(lab, NET, "1.0.0", steering(json!([policy])))
}

/// The rules of `scope: "subnet"` for the pod subnet of `family` (one per
/// node, whatever number of pods holds it; none without pods).
fn expected_subnet_rules(family: Family, priority: u32, table: u32) -> Vec<Value> {
    let (subnet, cluster) = match family {
        Family::V4 => (POD_V4, CLUSTER_V4),
        Family::V6 => (POD_V6, CLUSTER_V6),
    };
    let (src, srclen) = subnet.split_once('/').unwrap();
    let srclen: u32 = srclen.parse().unwrap();
    let (dst, dstlen) = cluster.split_once('/').unwrap();
    sorted(vec![
        json!({"priority": priority - 1, "src": src, "srclen": srclen, "dst": dst,
               "dstlen": dstlen.parse::<u32>().unwrap(), "table": "254", "protocol": PROTO}),
        json!({"priority": priority - 1, "src": src, "srclen": srclen, "iif": "lo",
               "table": "254", "protocol": PROTO}),
        json!({"priority": priority, "src": src, "srclen": srclen,
               "table": table.to_string(), "protocol": PROTO}),
    ])
}

/// `pods` steered as `scope` says: per pod, or by the subnet's rules alone.
fn assert_steered_by(
    scope: Scope,
    node: &str,
    pods: &[&Pod],
    priority: u32,
    table: u32,
    what: &str,
) {
    for family in [Family::V4, Family::V6] {
        let want = match scope {
            Scope::Pod => expected_source_rules(family, pods, priority, table),
            Scope::Subnet if pods.is_empty() => vec![],
            Scope::Subnet => expected_subnet_rules(family, priority, table),
        };
        assert_eq!(
            sorted(our_rules(node, family)),
            want,
            "{what} ({scope:?} scope): {family:?} rules"
        );
    }
}

fn assert_table_100(node: &str, what: &str) {
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            table(node, family, 100),
            expected_table_100(family),
            "{what}: {family:?} table 100"
        );
    }
}

/// Client B's requests to `pod` (v4 and v6) and the address the pod must see.
fn from_client_b<'a>(t: &'a Topo, pod: &Pod) -> Vec<(&'a str, std::net::SocketAddr, IpAddr)> {
    from_client(&t.clib, pod, CLIENT_B_V4, CLIENT_B_V6)
}

/// The demo's scenario. Without gwsteer client B (behind router B) gets no
/// answer from the pod, because the replies leave by the node's default route
/// to router A; with gwsteer they leave by router B and client B is answered
/// (the pod sees client B's own address); after DEL it fails again and the
/// node is exactly as before.
#[test]
fn client_b_is_answered_only_while_the_pod_is_steered() {
    answered_only_while_steered(Scope::Pod, "srcasym");
}

/// The same with `scope: "subnet"`: the same traffic, by the subnet's rules.
#[test]
fn subnet_scope_client_b_is_answered_only_while_the_pod_is_steered() {
    answered_only_while_steered(Scope::Subnet, "subasym");
}

fn answered_only_while_steered(scope: Scope, name: &str) {
    let lab = Lab::new(name);
    let t = Topo::build(&lab);
    let plain = conflist(&lab, NET, "1.0.0", None);
    let steer = oam_conflist_scoped(&lab, scope);

    // Bridge + host-local alone: client A is answered, client B is not.
    let pod = add_pod(&lab, &t.node, &plain, "pod", "ctr1", "default");
    {
        let _srv = pod.serve();
        assert_answered(
            "plain conflist: client A",
            &from_client(&t.clia, &pod, CLIENT_A_V4, CLIENT_A_V6),
        );
        assert_unanswered(
            "plain conflist: client B",
            &without_peer(&from_client_b(&t, &pod)),
        );
    }
    del_pod(&t.node, &plain, &pod);
    // The bridge plugin leaves cni0 and its addresses behind: the reference
    // state is taken after its first DEL, when they already exist.
    wait_bridge_carrier_off(&t.node, "cni0");
    let before = snapshot(&t.node);

    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    assert_steered_by(scope, &t.node, &[&pod], 1000, 100, "after ADD");
    assert_table_100(&t.node, "after ADD");
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctr1@eth0.json"]);
    let (s4, s6) = pod.serve();
    assert_answered("steered: client B", &from_client_b(&t, &pod));
    assert!(
        s4.peers().iter().any(|p| p.ip() == addr(CLIENT_B_V4)),
        "v4 server peers {:?}",
        s4.peers()
    );
    assert!(
        s6.peers().iter().any(|p| p.ip() == addr(CLIENT_B_V6)),
        "v6 server peers {:?}",
        s6.peers()
    );
    // Every reply of a steered pod leaves via router B, which has no route to client A.
    assert_unanswered("steered: client A", &[(&t.clia, pod.sock4(8080))]);

    // DEL of gwsteer's part alone (the runtime's DEL runs it first): the pod
    // is still attached, and client B is no longer answered.
    gwsteer_call(&t.node, &steer, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    assert_unanswered(
        "after gwsteer DEL: client B",
        &without_peer(&from_client_b(&t, &pod)),
    );
    drop((s4, s6));

    // The whole conflist DEL (gwsteer's DEL again: nothing to do, success).
    del_pod(&t.node, &steer, &pod);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    wait_bridge_carrier_off(&t.node, "cni0");
    assert_same_state("node after DEL", &before, &snapshot(&t.node));
}

/// Pod-to-pod traffic keeps working while the pods are steered: pods on the
/// same bridge talk over L2, and routed pod traffic (a pod on a second bridge
/// of the node) stays on the node because of the `exclude` rules.
#[test]
fn exclude_keeps_pod_to_pod_traffic_on_the_node() {
    exclude_keeps_pod_to_pod(Scope::Pod, "srcexcl");
}

#[test]
fn subnet_scope_exclude_keeps_pod_to_pod_traffic_on_the_node() {
    exclude_keeps_pod_to_pod(Scope::Subnet, "subexcl");
}

fn exclude_keeps_pod_to_pod(scope: Scope, name: &str) {
    let lab = Lab::new(name);
    let t = Topo::build(&lab);
    let steer = oam_conflist_scoped(&lab, scope);
    let other = other_bridge_conflist(&lab);
    let pod1 = add_pod(&lab, &t.node, &steer, "pod1", "ctr1", "default");
    let pod2 = add_pod(&lab, &t.node, &steer, "pod2", "ctr2", "default");
    let pod3 = add_pod(&lab, &t.node, &other, "pod3", "ctr3", "default");
    assert_steered_by(
        scope,
        &t.node,
        &[&pod1, &pod2],
        1000,
        100,
        "two steered pods",
    );
    let _servers = [pod1.serve(), pod2.serve(), pod3.serve()];

    assert_answered(
        "pod to pod while steered",
        &[
            // Same bridge.
            (&pod1.ns, pod2.sock4(8080), pod1.v4),
            (&pod1.ns, pod2.sock6(8080), pod1.v6),
            (&pod2.ns, pod1.sock4(8080), pod2.v4),
            (&pod2.ns, pod1.sock6(8080), pod2.v6),
            // Routed by the node between cni0 and cni1.
            (&pod1.ns, pod3.sock4(8080), pod1.v4),
            (&pod1.ns, pod3.sock6(8080), pod1.v6),
            (&pod3.ns, pod1.sock4(8080), pod3.v4),
            (&pod3.ns, pod1.sock6(8080), pod3.v6),
            // And the steering itself works.
            (&t.clib, pod1.sock4(8080), addr(CLIENT_B_V4)),
            (&t.clib, pod1.sock6(8080), addr(CLIENT_B_V6)),
        ],
    );
    // The node's choice for pod1 -> pod3: the main table (exclusion rule), cni1.
    for (dst, src) in [(pod3.v4, pod1.v4), (pod3.v6, pod1.v6)] {
        let r = route_get(&t.node, dst, src, "cni0");
        assert_eq!(r["dev"], "cni1", "route get {dst} from {src}: {r}");
        assert!(r.get("table").is_none(), "main table expected: {r}");
    }
}

/// A second plain network on bridge cni1 (10.244.2.0/24, fd00:244:0:2::/64),
/// inside the excluded cluster CIDRs.
fn other_bridge_conflist(lab: &Lab) -> Value {
    bridge_conflist(
        "other",
        "1.0.0",
        "cni1",
        &["10.244.2.0/24", "fd00:244:0:2::/64"],
        &lab.subdir("ipam-other"),
        Value::Null,
    )
}

/// The same without `exclude`: the node sends pod1's traffic to pod3 (routed,
/// inside the cluster CIDR) to router B, which sends it back: it never
/// arrives, in either direction. Same-bridge traffic does not depend on it.
#[test]
fn without_exclude_routed_pod_to_pod_traffic_is_steered_away() {
    let lab = Lab::new("srcnoexcl");
    let t = Topo::build(&lab);
    let mut policy = source_policy("oam", 100);
    policy.as_object_mut().unwrap().remove("exclude");
    let steer = conflist(&lab, NET, "1.0.0", steering(json!([policy])));
    let other = other_bridge_conflist(&lab);
    let pod1 = add_pod(&lab, &t.node, &steer, "pod1", "ctr1", "default");
    let pod2 = add_pod(&lab, &t.node, &steer, "pod2", "ctr2", "default");
    let pod3 = add_pod(&lab, &t.node, &other, "pod3", "ctr3", "default");
    for family in [Family::V4, Family::V6] {
        let want: Vec<Value> = [&pod1, &pod2]
            .iter()
            .flat_map(|p| {
                let a = if family == Family::V4 { p.v4 } else { p.v6 };
                expected_rules(a, 1000, 100, &[])
            })
            .collect();
        assert_eq!(sorted(our_rules(&t.node, family)), sorted(want));
    }
    let _servers = [pod1.serve(), pod2.serve(), pod3.serve()];

    for (dst, src, gw) in [(pod3.v4, pod1.v4, RTR_B_V4), (pod3.v6, pod1.v6, RTR_B_V6)] {
        let r = route_get(&t.node, dst, src, "cni0");
        assert_eq!(
            (&r["table"], &r["gateway"], &r["dev"]),
            (&json!("100"), &json!(gw), &json!("eth-b")),
            "route get {dst} from {src}: {r}"
        );
    }
    assert_unanswered(
        "routed pod to pod without exclude",
        &[
            (&pod1.ns, pod3.sock4(8080)),
            (&pod1.ns, pod3.sock6(8080)),
            (&pod3.ns, pod1.sock4(8080)),
            (&pod3.ns, pod1.sock6(8080)),
        ],
    );
    assert_answered(
        "same-bridge pod to pod (L2, never routed)",
        &[
            (&pod1.ns, pod2.sock4(8080), pod1.v4),
            (&pod1.ns, pod2.sock6(8080), pod1.v6),
        ],
    );
}

/// Exactly what ADD makes, read back with `ip -j`: the rules (exclusions at
/// priority − 1, steering rule at priority, /32 and /128 sources, protocol
/// 211) and the table routes.
#[test]
fn rules_and_table_routes_read_back_exactly() {
    let lab = Lab::new("srcread");
    let t = Topo::build(&lab);
    let steer = oam_conflist(&lab, NET, "1.0.0");
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    for (family, addr, cluster) in [
        (Family::V4, pod.v4, CLUSTER_V4),
        (Family::V6, pod.v6, CLUSTER_V6),
    ] {
        let want = expected_rules(addr, 1000, 100, &[cluster]);
        // Nothing but the kernel's defaults and exactly these rules, in priority order.
        let custom: Vec<Value> = all_rules(&t.node, family)
            .into_iter()
            .filter(|r| !matches!(r["priority"].as_u64(), Some(0 | 32766 | 32767)))
            .collect();
        assert_eq!(custom, want, "{family:?} rules");
        // A host source: no "srclen" (a /24 or any prefix would show one).
        assert!(custom.iter().all(|r| r.get("srclen").is_none()));
        assert_eq!(table(&t.node, family, 100), expected_table_100(family));
    }
    // The pod's own routes are the primary's: gwsteer changes nothing in the pod.
    let pod_rules = all_rules(&pod.ns, Family::V4);
    assert!(
        pod_rules.iter().all(|r| r["protocol"] != PROTO),
        "{pod_rules:?}"
    );
}

/// Two gateways per family with weights 1 and 3 in table 1000000 make one
/// multipath route per family carrying those weights; `priority` moves the
/// rules; a policy without `priority` at index 1 gets 1000 + 10·1 (and its
/// gateways without `dev` get the device the kernel resolves).
#[test]
fn multipath_weights_custom_and_default_priorities() {
    let lab = Lab::new("srcmpath");
    let t = Topo::build(&lab);
    let lb = json!({
        "name": "lb",
        "table": 1000000,
        "priority": 500,
        "gateways": [
            {"via": RTR_B_V4, "dev": "eth-b", "weight": 1},
            {"via": RTR_A_V4, "dev": "eth-a", "weight": 3},
            {"via": RTR_B_V6, "dev": "eth-b", "weight": 1},
            {"via": RTR_A_V6, "dev": "eth-a", "weight": 3},
        ],
        "exclude": [CLUSTER_V4, CLUSTER_V6],
    });
    // Gateways without `dev`: the kernel finds the device (eth-b) itself.
    let mut oam_without_dev = source_policy("oam", 100);
    oam_without_dev["gateways"] = json!([{"via": RTR_B_V4}, {"via": RTR_B_V6}]);
    let steer = conflist(&lab, NET, "1.0.0", steering(json!([lb, oam_without_dev])));
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    for (family, addr, cluster) in [
        (Family::V4, pod.v4, CLUSTER_V4),
        (Family::V6, pod.v6, CLUSTER_V6),
    ] {
        let mut want = expected_rules(addr, 500, 1000000, &[cluster]);
        want.extend(expected_rules(addr, 1010, 100, &[cluster]));
        assert_eq!(
            sorted(our_rules(&t.node, family)),
            sorted(want),
            "{family:?}"
        );
        assert_eq!(table(&t.node, family, 100), expected_table_100(family));
    }
    let hop = |gw: &str, dev: &str, weight: u32| json!({"gateway": gw, "dev": dev, "weight": weight, "flags": []});
    assert_eq!(
        table(&t.node, Family::V4, 1000000),
        vec![json!({
            "dst": "default", "protocol": PROTO, "flags": [],
            "nexthops": [hop(RTR_B_V4, "eth-b", 1), hop(RTR_A_V4, "eth-a", 3)],
        })]
    );
    assert_eq!(
        table(&t.node, Family::V6, 1000000),
        vec![json!({
            "dst": "default", "protocol": PROTO, "metric": 1024, "flags": [], "pref": "medium",
            "nexthops": [hop(RTR_B_V6, "eth-b", 1), hop(RTR_A_V6, "eth-a", 3)],
        })]
    );
    // CHECK agrees that all of it (multipath, weights, resolved devices) is as recorded.
    conflist_check(
        &t.node,
        &steer,
        &pod.cid,
        &pod.path(),
        "eth0",
        Some(&pod.cni_args),
        &pod.result,
    )
    .unwrap_or_else(|o| panic!("CHECK: {o}"));
    del_pod(&t.node, &steer, &pod);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100, 1000000]);
}

/// Table routes are node-level: two pods share one route set; DEL of the
/// first keeps it (and the second pod's rules and traffic); DEL of the last
/// removes it.
#[test]
fn table_routes_are_shared_and_go_with_the_last_pod() {
    shared_with_the_last_pod(Scope::Pod, "srcshare");
}

/// With `scope: "subnet"` the subnet's rules are shared like the table
/// routes: the first pod's DEL leaves them (and the second pod steered).
#[test]
fn subnet_scope_rules_are_shared_and_go_with_the_last_pod() {
    shared_with_the_last_pod(Scope::Subnet, "subshare");
}

fn shared_with_the_last_pod(scope: Scope, name: &str) {
    let lab = Lab::new(name);
    let t = Topo::build(&lab);
    let steer = oam_conflist_scoped(&lab, scope);
    let pod1 = add_pod(&lab, &t.node, &steer, "pod1", "ctr1", "default");
    let pod2 = add_pod(&lab, &t.node, &steer, "pod2", "ctr2", "default");
    assert_table_100(&t.node, "two pods");
    assert_steered_by(scope, &t.node, &[&pod1, &pod2], 1000, 100, "two pods");
    assert_eq!(
        records(&state_dir(&lab), NET),
        vec!["ctr1@eth0.json", "ctr2@eth0.json"]
    );

    del_pod(&t.node, &steer, &pod1);
    assert_table_100(&t.node, "after DEL of the first pod");
    assert_steered_by(
        scope,
        &t.node,
        &[&pod2],
        1000,
        100,
        "after DEL of the first pod",
    );
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctr2@eth0.json"]);
    {
        let _srv = pod2.serve();
        assert_answered("second pod still steered", &from_client_b(&t, &pod2));
    }

    del_pod(&t.node, &steer, &pod2);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
}

/// `namespaces` selects pods by K8S_POD_NAMESPACE; `args.cni.gwsteer.steering`
/// opts a pod out (`[]`) or in (`["name"]`, whatever its namespace).
#[test]
fn namespaces_and_pod_args_select_the_steered_pods() {
    let lab = Lab::new("srcselect");
    let t = Topo::build(&lab);
    let mut policy = source_policy("oam", 100);
    policy["namespaces"] = json!(["oam"]);
    let base = conflist(&lab, NET, "1.0.0", steering(json!([policy])));
    let with_args = |names: Value| {
        let mut c = base.clone();
        c["plugins"][1]["args"] = json!({"cni": {"gwsteer": {"steering": names}}});
        c
    };
    let opt_out = with_args(json!([]));
    let opt_in = with_args(json!(["oam"]));

    let in_oam = add_pod(&lab, &t.node, &base, "inoam", "ctr-oam", "oam");
    let in_default = add_pod(&lab, &t.node, &base, "indef", "ctr-def", "default");
    let out_oam = add_pod(&lab, &t.node, &opt_out, "outoam", "ctr-out", "oam");
    let in_by_args = add_pod(&lab, &t.node, &opt_in, "inargs", "ctr-in", "default");

    assert_steered(&t.node, &[&in_oam, &in_by_args], 1000, 100, "selection");
    assert_table_100(&t.node, "selection");
    let pods = [&in_oam, &in_default, &out_oam, &in_by_args];
    let _servers: Vec<_> = pods.iter().map(|p| p.serve()).collect();
    let mut answered = from_client_b(&t, &in_oam);
    answered.extend(from_client_b(&t, &in_by_args));
    assert_answered("selected pods", &answered);
    let mut not = without_peer(&from_client_b(&t, &in_default));
    not.extend(without_peer(&from_client_b(&t, &out_oam)));
    assert_unanswered("pods not selected", &not);

    del_pod(&t.node, &base, &in_oam);
    del_pod(&t.node, &base, &in_default);
    del_pod(&t.node, &opt_out, &out_oam);
    del_pod(&t.node, &opt_in, &in_by_args);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
}

/// ADD, DEL, ADD on the same container and interface works (the reference
/// `sbr` fails here with "file exists"), whether the DEL took the whole
/// attachment or only gwsteer's part (pod interface left in place).
#[test]
fn re_add_after_del_works() {
    let lab = Lab::new("srcreadd");
    let t = Topo::build(&lab);
    let steer = oam_conflist(&lab, NET, "1.0.0");
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    del_pod(&t.node, &steer, &pod);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    assert_steered(&t.node, &[&pod], 1000, 100, "second ADD");
    assert_table_100(&t.node, "second ADD");

    // gwsteer's DEL alone, then its ADD again, with the interface in place.
    gwsteer_call(&t.node, &steer, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
    gwsteer_call(&t.node, &steer, "ADD", &pod, Some(&pod.result)).expect_ok("gwsteer re-ADD");
    assert_steered(&t.node, &[&pod], 1000, 100, "third ADD");
    assert_table_100(&t.node, "third ADD");
    let _srv = pod.serve();
    assert_answered("after re-ADD", &from_client_b(&t, &pod));
}

/// A retried ADD (no DEL in between) leaves exactly one set of rules and routes.
#[test]
fn retried_add_leaves_one_set_of_rules() {
    let lab = Lab::new("srcretry");
    let t = Topo::build(&lab);
    let steer = oam_conflist(&lab, NET, "1.0.0");
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    for n in 0..2 {
        let out = gwsteer_call(&t.node, &steer, "ADD", &pod, Some(&pod.result))
            .expect_ok(&format!("retried ADD {n}"));
        assert_eq!(out, pod.result, "a retried ADD prints the same result");
    }
    // Full equality: a duplicate rule would be an extra element.
    assert_steered(&t.node, &[&pod], 1000, 100, "after retries");
    assert_table_100(&t.node, "after retries");
    assert_eq!(records(&state_dir(&lab), NET), vec!["ctr1@eth0.json"]);
    del_pod(&t.node, &steer, &pod);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
}

/// ADD again for the same attachment with a changed config (priority 2000,
/// table 101) replaces the old rules and table routes: none of them is left.
#[test]
fn add_with_a_changed_config_replaces_the_old_objects() {
    let lab = Lab::new("srcchange");
    let t = Topo::build(&lab);
    let old = oam_conflist(&lab, NET, "1.0.0");
    let pod = add_pod(&lab, &t.node, &old, "pod", "ctr1", "default");
    assert_steered(&t.node, &[&pod], 1000, 100, "first ADD");

    let mut policy = source_policy("oam", 101);
    policy["priority"] = json!(2000);
    let new = conflist(&lab, NET, "1.0.0", steering(json!([policy])));
    gwsteer_call(&t.node, &new, "ADD", &pod, Some(&pod.result)).expect_ok("ADD, new config");
    assert_steered(&t.node, &[&pod], 2000, 101, "after ADD with the new config");
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            table(&t.node, family, 100),
            Vec::<Value>::new(),
            "{family:?} table 100"
        );
        assert_eq!(
            table(&t.node, family, 101),
            expected_table_100(family),
            "{family:?} table 101"
        );
    }
    {
        let _srv = pod.serve();
        assert_answered("steered by the new config", &from_client_b(&t, &pod));
    }
    // CHECK with the new config passes; with the old one it names the difference.
    gwsteer_call(&t.node, &new, "CHECK", &pod, Some(&pod.result)).expect_ok("CHECK, new config");
    let stale = gwsteer_call(&t.node, &old, "CHECK", &pod, Some(&pod.result));
    assert!(stale.expect_error("CHECK, old config") >= 100, "{stale}");
    let want = format!("inet rule 1000: from {} lookup 100", pod.v4);
    assert!(
        stale.error_msg().unwrap_or_default().contains(&want),
        "CHECK must name {want:?}: {stale}"
    );
    del_pod(&t.node, &new, &pod);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100, 101]);
}

/// The ADD result is the prevResult passed through, in the config's
/// cniVersion (1.0.0; 1.1.0 with the bridge at 1.0.0 underneath).
#[test]
fn add_result_is_the_prev_result_in_the_config_version() {
    let lab = Lab::new("srcresult");
    let t = Topo::build(&lab);
    for (i, version) in ["1.0.0", "1.1.0"].into_iter().enumerate() {
        let network = format!("steer{i}");
        // Each network its own table and rule priority (CONTRACT 4).
        let mut policy = source_policy("oam", 100 + i as u32);
        policy["priority"] = json!(1000 + 100 * i);
        let conf = bridge_conflist(
            &network,
            version,
            &format!("br{i}"),
            &[
                &format!("10.244.{}.0/24", i + 1),
                &format!("fd00:244:0:{}::/64", i + 1),
            ],
            &lab.subdir(&format!("ipam{i}")),
            gwsteer_plugin(&state_dir(&lab), json!({"steering": [policy]})),
        );
        let pod_ns = lab.netns(&format!("pod{i}"));
        let cid = format!("ctr{i}");
        let args = k8s_cni_args("default", "web", &cid);
        // The chain by hand: the bridge's result becomes gwsteer's prevResult.
        let (bridge_cfg, _, bridge_version) = plugin_config(&conf, 0, None);
        assert_eq!(bridge_version, "1.0.0");
        let call = CniCall::new("ADD", &cid, "eth0", bridge_cfg)
            .netns(&netns_path(&pod_ns))
            .cni_args(&args);
        let bridge_result = invoke(&t.node, std::path::Path::new("/usr/lib/cni/bridge"), &call)
            .expect_ok("bridge ADD");
        let pod = Pod {
            ns: pod_ns,
            cid,
            cni_args: args,
            v4: result_addrs(&bridge_result).0,
            v6: result_addrs(&bridge_result).1,
            result: bridge_result.clone(),
        };
        let (cfg, _, _) = plugin_config(&conf, 1, Some(&bridge_result));
        let out = gwsteer_call(&t.node, &conf, "ADD", &pod, Some(&bridge_result))
            .expect_ok(&format!("gwsteer ADD {version}"));
        assert_eq!(out["cniVersion"], version);
        assert_eq!(
            out, cfg["prevResult"],
            "{version}: result is the prevResult"
        );
        let mut expect = bridge_result.clone();
        expect["cniVersion"] = json!(version);
        assert_eq!(out, expect, "{version}: the bridge's result, relabelled");
        // And the steering happened (not a bare pass-through).
        let rules = our_rules(&t.node, Family::V4);
        let (src, tbl) = (pod.v4.to_string(), (100 + i).to_string());
        assert!(
            rules
                .iter()
                .any(|r| r["src"] == src.as_str() && r["table"] == tbl.as_str()),
            "{version}: {rules:?}"
        );
    }
}

/// `scope: "subnet"`: the subnet's rule also covers the node's own address
/// on the pod bridge (10.244.1.1, fd00:244:0:1::1). What the node itself
/// sends from it keeps the main table (`iif lo` exception): it reaches
/// client A through router A, while the steered pod's replies take router
/// B. A pod that opts out (cni-args) gets one exception rule per address and
/// is not steered; CHECK names a subnet rule deleted by hand; the last DEL
/// leaves nothing.
#[test]
fn subnet_scope_leaves_node_traffic_and_opted_out_pods_alone() {
    let lab = Lab::new("subnode");
    let t = Topo::build(&lab);
    let steer = oam_conflist_scoped(&lab, Scope::Subnet);
    let mut opt_out = steer.clone();
    opt_out["plugins"][1]["args"] = json!({"cni": {"gwsteer": {"steering": []}}});
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    let out = add_pod(&lab, &t.node, &opt_out, "out", "ctr2", "default");

    // The node's own traffic from its bridge address: main table, router A.
    for (dst, src) in [
        (CLIENT_A_V4, "10.244.1.1"),
        (CLIENT_A_V6, "fd00:244:0:1::1"),
    ] {
        let r = ip_json(&t.node, &["-N", "route", "get", dst, "from", src]);
        let r = &r[0];
        assert!(r.get("table").is_none(), "node's own {src} -> {dst}: {r}");
        assert_eq!(r["dev"], "eth-a", "node's own {src} -> {dst}: {r}");
        assert!(
            ping_from(&t.node, src, dst),
            "node's own ping {src} -> {dst}"
        );
    }
    // While the pod's replies (forwarded from cni0) are steered to router B.
    for (dst, src) in [(CLIENT_A_V4, pod.v4), (CLIENT_A_V6, pod.v6)] {
        let r = route_get(&t.node, addr(dst), src, "cni0");
        assert_eq!(r["table"], "100", "pod {src} -> {dst}: {r}");
    }

    // The opted-out pod: one rule per address, not steered.
    for (family, a) in [(Family::V4, out.v4), (Family::V6, out.v6)] {
        let mut want = expected_subnet_rules(family, 1000, 100);
        want.push(
            json!({"priority": 999, "src": a.to_string(), "table": "254",
                         "protocol": PROTO}),
        );
        assert_eq!(
            sorted(our_rules(&t.node, family)),
            sorted(want),
            "{family:?}"
        );
    }
    let _servers = [pod.serve(), out.serve()];
    assert_answered("steered pod: client B", &from_client_b(&t, &pod));
    assert_unanswered(
        "opted-out pod: client B",
        &without_peer(&from_client_b(&t, &out)),
    );
    assert_answered(
        "opted-out pod: client A",
        &from_client(&t.clia, &out, CLIENT_A_V4, CLIENT_A_V6),
    );

    // CHECK sees the subnet's rule gone.
    let check = |what: &str| {
        conflist_check(
            &t.node,
            &steer,
            &pod.cid,
            &pod.path(),
            "eth0",
            Some(&pod.cni_args),
            &pod.result,
        )
        .map_err(|o| format!("{what}: {o}"))
    };
    check("CHECK, intact").unwrap();
    ip(
        &t.node,
        [
            "rule", "del", "priority", "1000", "from", POD_V4, "table", "100",
        ],
    );
    let err = check("CHECK, subnet rule deleted").expect_err("CHECK must fail");
    assert!(err.contains("from 10.244.1.0/24 lookup 100"), "{err}");

    del_pod(&t.node, &steer, &pod);
    del_pod(&t.node, &opt_out, &out);
    assert_nothing_left(&t.node, &state_dir(&lab), NET, &[100]);
}
