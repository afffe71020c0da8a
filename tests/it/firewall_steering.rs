//! `mark` and `connmark` steering and the masquerade exemption (CONTRACT
//! 3.1, 3.2, 4) against the real kernel, with the nftables firewall backend
//! (`<scenario>::nftables`):
//!
//! - connmark: replies to connections that came in by router B leave by
//!   router B, everything else (replies to client A, pod-initiated traffic)
//!   by the node's default route to router A; two connmark policies on one
//!   node keep three routers apart;
//! - mark with `egressTo`: pod-initiated traffic to client B's network leaves
//!   by router B, and `exclude` keeps part of it on the default path;
//! - the masquerade exemption against kindnet's `KIND-MASQ-AGENT`
//!   (iptables-legacy, iptables-nft) and an nftables masquerade;
//! - costs: with 1, 100 and 500 pods the node has the same rules, only the
//!   member sets grow; sysctls are set while needed and restored;
//! - DEL and GC leave nothing of gwsteer's behind.
//!
//! Paths are proven with traffic and with per-flow packet counters in the
//! routers (nftables rules in the routers' own namespaces): "the reply went
//! through router B" means router B counted packets from the pod to client
//! B and router A counted none.

use std::collections::BTreeMap;

use crate::support::asym::*;
use crate::support::fwsteer::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "fwsteer";

/// Runs a scenario `fn(Fw, tag)` with the nftables backend, as test
/// `<scenario>::nftables`.
macro_rules! nftables_test {
    ($scenario:ident, $tag:literal) => {
        mod $scenario {
            use super::*;

            #[test]
            fn nftables() {
                super::$scenario(Fw::Nftables, concat!($tag, "n"));
            }
        }
    };
    // Both ways: `<scenario>::nftables` per pod, `<scenario>::nftables_subnet`
    // with `scope: "subnet"` — the same traffic either way.
    (scoped $scenario:ident, $tag:literal) => {
        mod $scenario {
            use super::*;

            #[test]
            fn nftables() {
                super::$scenario(Fw::Nftables, Scope::Pod, concat!($tag, "n"));
            }

            #[test]
            fn nftables_subnet() {
                super::$scenario(Fw::Nftables, Scope::Subnet, concat!($tag, "s"));
            }
        }
    };
}

/// Which pods' addresses a policy's kernel objects name (`scope`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Pod,
    Subnet,
}

/// `policy` with `scope`.
fn scoped(mut policy: Value, scope: Scope) -> Value {
    if scope == Scope::Subnet {
        policy["scope"] = json!("subnet");
    }
    policy
}

fn gwsteer_keys(fw: Fw, steering: Value) -> Option<Value> {
    Some(json!({"firewallBackend": fw.name(), "steering": steering}))
}

type Flows = BTreeMap<(String, String), u64>;

/// Between two readings of the routers' flow counters, the pod's packets to
/// client network `letter` went through router `via` (both families) and
/// through no other router of `labels`, for each `(letter, via)`.
fn assert_paths(
    what: &str,
    before: &Flows,
    after: &Flows,
    labels: &[&str],
    paths: &[(&str, &str)],
) {
    for (letter, via) in paths {
        for family in ["v4", "v6"] {
            let flow = format!("{family}-{letter}");
            for label in labels {
                let n = delta(before, after, label, &flow);
                if label == via {
                    assert!(
                        n > 0,
                        "{what}: no {flow} packet went through router {label}; counters {after:?}"
                    );
                } else {
                    assert_eq!(
                        n, 0,
                        "{what}: {n} {flow} packet(s) went through router {label}, not {via}"
                    );
                }
            }
        }
    }
}

/// Both families' gwsteer rules in `node`, sorted.
fn assert_fwmark_rules(node: &str, want: &[Value], what: &str) {
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            sorted(our_rules(node, family)),
            sorted(want.to_vec()),
            "{what}: {family:?} rules"
        );
    }
}

fn assert_default_via(node: &str, table_id: u32, gw: [&str; 2], dev: &str, what: &str) {
    for (family, gw) in [Family::V4, Family::V6].into_iter().zip(gw) {
        assert_eq!(
            table(node, family, table_id),
            vec![expected_default(family, gw, dev)],
            "{what}: {family:?} table {table_id}"
        );
    }
}

/// Router `router` has no route to `dsts`: what it gets for them is lost.
fn assert_no_route(router: &str, dsts: &[&str]) {
    for dst in dsts {
        if let Ok(route) = try_ip(router, ["route", "get", dst]) {
            panic!("{router} must have no route to {dst}, has: {route}");
        }
    }
}

/// Reverse-path filtering in loose mode, as on nodes whose pods are reached
/// by several uplinks (strict mode drops client B's requests on arrival,
/// whatever happens to the replies). With the marks gwsteer sets and
/// `src_valid_mark`, loose mode still passes the pod's steered replies.
fn loose_rp_filter(lab: &Lab, node: &str) {
    lab.sysctl(node, "net.ipv4.conf.all.rp_filter", "2");
}

/// The asymmetric topology for path checks: loose reverse-path filtering
/// on the node, flow counters in routers A and B.
fn counted_topo(tag: &str) -> (Lab, Topo) {
    let lab = Lab::new(tag);
    let t = Topo::build(&lab);
    loose_rp_filter(&lab, &t.node);
    count_flows(&lab, &t.rtra);
    count_flows(&lab, &t.rtrb);
    (lab, t)
}

/// gwsteer's DEL alone (the runtime's DEL runs it first): nothing of
/// gwsteer's is left, the pod stays, and the replies to `clients` (netns,
/// client network letter), `who` in messages, are not answered: they go to
/// router A. Then the servers stop and the whole conflist DEL leaves nothing.
#[allow(clippy::too_many_arguments)]
fn del_steering_then_pod(
    lab: &Lab,
    node: &str,
    steer: &Value,
    pod: &Pod,
    servers: (TcpServer, TcpServer),
    (routers, labels, before): (&[(&str, &str)], &[&str], &Flows),
    clients: &[(&str, &str)],
    who: &str,
) {
    gwsteer_call(node, steer, "DEL", pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_clean("after gwsteer DEL", node, &state_dir(lab), NET);
    let reqs: Vec<_> = clients
        .iter()
        .flat_map(|(ns, _)| [(*ns, pod.sock4(8080)), (*ns, pod.sock6(8080))])
        .collect();
    assert_unanswered(&format!("after gwsteer DEL: {who}"), &reqs);
    let after = all_flows(routers);
    let paths: Vec<_> = clients.iter().map(|(_, letter)| (*letter, "A")).collect();
    assert_paths(
        &format!("after gwsteer DEL: replies to {who}"),
        before,
        &after,
        labels,
        &paths,
    );
    drop(servers);
    del_pod(node, steer, pod);
    assert_clean("after DEL", node, &state_dir(lab), NET);
}

/// gwsteer's network config with `firewallBackend` `fw` and `steering`.
fn fw_config(fw: Fw, network: &str, state: &std::path::Path, steering: Value) -> Value {
    gwsteer_config(network, state, gwsteer_keys(fw, steering).unwrap())
}

/// Four member sets (two policies, two families), each of `n` elements.
fn assert_member_sets(node: &str, fw: Fw, n: usize, what: &str) {
    let sets = member_sets(node, fw, NET);
    assert!(
        sets.len() == 4 && sets.values().all(|m| *m == n),
        "{what}: member sets {sets:?}"
    );
}

// ---- 1. connmark ----

/// One connmark policy {mark 0x14, ingress eth-b, table 100, via router B}.
/// Client A (behind router A, the node's default route) and client B (behind
/// router B) both get answers from the same pod server, each reply through
/// its own router; the pod's connections to client A are not steered (they
/// reach client A, whom router B could not reach); without gwsteer, the
/// replies to client B go to router A and are lost.
fn connmark_return_path(fw: Fw, scope: Scope, tag: &str) {
    let (lab, t) = counted_topo(tag);
    let routers = [("A", t.rtra.as_str()), ("B", t.rtrb.as_str())];
    let labels = ["A", "B"];
    assert_no_route(&t.rtra, &[CLIENT_B_V4, CLIENT_B_V6]);
    assert_no_route(&t.rtrb, &[CLIENT_A_V4, CLIENT_A_V6]);
    let steer = conflist(
        &lab,
        NET,
        "1.0.0",
        gwsteer_keys(
            fw,
            json!([scoped(
                connmark_policy("ret-b", 100, "0x14", "eth-b", RTR_B_V4, RTR_B_V6),
                scope
            )]),
        ),
    );
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    assert_fwmark_rules(&t.node, &[fwmark_rule(1000, "0x14", 100)], "after ADD");
    assert_default_via(&t.node, 100, [RTR_B_V4, RTR_B_V6], "eth-b", "after ADD");

    let servers = pod.serve();
    let f0 = all_flows(&routers);
    assert_answered(
        "connmark: clients A and B",
        &[
            from_client(&t.clia, &pod, CLIENT_A_V4, CLIENT_A_V6),
            from_client(&t.clib, &pod, CLIENT_B_V4, CLIENT_B_V6),
        ]
        .concat(),
    );
    let f1 = all_flows(&routers);
    assert_paths(
        "replies to clients A and B",
        &f0,
        &f1,
        &labels,
        &[("a", "A"), ("b", "B")],
    );

    // Pod-initiated connections carry no connection mark: they take the
    // default route. Client A (only router A reaches it) answers; client B
    // (only router B reaches it) does not.
    let _at_a = [
        TcpServer::start(&t.clia, sock(CLIENT_A_V4, 9090)),
        TcpServer::start(&t.clia, sock(CLIENT_A_V6, 9090)),
    ];
    let _at_b = [
        TcpServer::start(&t.clib, sock(CLIENT_B_V4, 9090)),
        TcpServer::start(&t.clib, sock(CLIENT_B_V6, 9090)),
    ];
    assert_answered(
        "pod-initiated, to client A",
        &[
            (pod.ns.as_str(), sock(CLIENT_A_V4, 9090), pod.v4),
            (pod.ns.as_str(), sock(CLIENT_A_V6, 9090), pod.v6),
        ],
    );
    let f2 = all_flows(&routers);
    assert_paths(
        "pod-initiated to client A",
        &f1,
        &f2,
        &labels,
        &[("a", "A")],
    );
    assert_unanswered(
        "pod-initiated, to client B",
        &[
            (pod.ns.as_str(), sock(CLIENT_B_V4, 9090)),
            (pod.ns.as_str(), sock(CLIENT_B_V6, 9090)),
        ],
    );
    let f3 = all_flows(&routers);
    assert_paths(
        "pod-initiated to client B",
        &f2,
        &f3,
        &labels,
        &[("b", "A")],
    );

    // gwsteer's DEL alone: the pod stays, client B's replies go to router A.
    del_steering_then_pod(
        &lab,
        &t.node,
        &steer,
        &pod,
        servers,
        (&routers, &labels, &f3),
        &[(&t.clib, "b")],
        "client B",
    );
}

nftables_test!(scoped connmark_return_path, "fwcm");

// ---- 2. two connmark policies ----

/// Two connmark policies on one node, {0x14, eth-b, table 100, router B}
/// and {0x15, eth-c, table 101, router C}: clients A, B and C are all
/// answered by the same pod, each reply through its own router.
fn two_connmark_policies(fw: Fw, tag: &str) {
    let (lab, t) = counted_topo(tag);
    let c = add_router_c(&lab, &t);
    count_flows(&lab, &c.rtrc);
    let routers = [
        ("A", t.rtra.as_str()),
        ("B", t.rtrb.as_str()),
        ("C", c.rtrc.as_str()),
    ];
    let labels = ["A", "B", "C"];
    assert_no_route(
        &t.rtra,
        &[CLIENT_B_V4, CLIENT_B_V6, CLIENT_C_V4, CLIENT_C_V6],
    );
    assert_no_route(
        &t.rtrb,
        &[CLIENT_A_V4, CLIENT_A_V6, CLIENT_C_V4, CLIENT_C_V6],
    );
    assert_no_route(
        &c.rtrc,
        &[CLIENT_A_V4, CLIENT_A_V6, CLIENT_B_V4, CLIENT_B_V6],
    );
    let steer = conflist(
        &lab,
        NET,
        "1.0.0",
        gwsteer_keys(
            fw,
            json!([
                connmark_policy("ret-b", 100, "0x14", "eth-b", RTR_B_V4, RTR_B_V6),
                connmark_policy("ret-c", 101, "0x15", "eth-c", RTR_C_V4, RTR_C_V6),
            ]),
        ),
    );
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    assert_fwmark_rules(
        &t.node,
        &[
            fwmark_rule(1000, "0x14", 100),
            fwmark_rule(1010, "0x15", 101),
        ],
        "after ADD",
    );
    assert_default_via(&t.node, 100, [RTR_B_V4, RTR_B_V6], "eth-b", "after ADD");
    assert_default_via(&t.node, 101, [RTR_C_V4, RTR_C_V6], "eth-c", "after ADD");

    let servers = pod.serve();
    let f0 = all_flows(&routers);
    assert_answered(
        "two connmark policies: clients A, B and C",
        &[
            from_client(&t.clia, &pod, CLIENT_A_V4, CLIENT_A_V6),
            from_client(&t.clib, &pod, CLIENT_B_V4, CLIENT_B_V6),
            from_client(&c.clic, &pod, CLIENT_C_V4, CLIENT_C_V6),
        ]
        .concat(),
    );
    let f1 = all_flows(&routers);
    assert_paths(
        "replies to clients A, B and C",
        &f0,
        &f1,
        &labels,
        &[("a", "A"), ("b", "B"), ("c", "C")],
    );

    del_steering_then_pod(
        &lab,
        &t.node,
        &steer,
        &pod,
        servers,
        (&routers, &labels, &f1),
        &[(&t.clib, "b"), (&c.clic, "c")],
        "clients B and C",
    );
}

nftables_test!(two_connmark_policies, "fwcm2");

// ---- 3. egress by destination ----

/// Client A also holds 10.2.0.200 and fd00:b::8002, inside client B's
/// networks but routed by router A: reachable only by the default path.
const B_NET_VIA_A_V4: &str = "10.2.0.200";
const B_NET_VIA_A_V6: &str = "fd00:b::8002";

/// A mark policy {0x20, egressTo client B's networks, table 102, router B}:
/// the pod's connections to client B leave by router B and succeed (router
/// A has no route there), its connections to client A leave by the default
/// route; with `exclude` of a part of egressTo, that part stays on the
/// default path.
fn egress_by_destination(fw: Fw, scope: Scope, tag: &str) {
    let (lab, t) = counted_topo(tag);
    let routers = [("A", t.rtra.as_str()), ("B", t.rtrb.as_str())];
    let labels = ["A", "B"];
    lab.addr(&t.clia, "eth0", &format!("{B_NET_VIA_A_V4}/32"));
    lab.addr(&t.clia, "eth0", &format!("{B_NET_VIA_A_V6}/128"));
    lab.route(&t.rtra, &["add", B_NET_VIA_A_V4, "via", CLIENT_A_V4]);
    lab.route(&t.rtra, &["add", B_NET_VIA_A_V6, "via", CLIENT_A_V6]);
    assert_no_route(&t.rtra, &[CLIENT_B_V4, CLIENT_B_V6]);
    assert_no_route(&t.rtrb, &[CLIENT_A_V4, CLIENT_A_V6]);
    let _servers = [
        TcpServer::start(&t.clib, sock(CLIENT_B_V4, 9090)),
        TcpServer::start(&t.clib, sock(CLIENT_B_V6, 9090)),
        TcpServer::start(&t.clia, sock(CLIENT_A_V4, 9090)),
        TcpServer::start(&t.clia, sock(CLIENT_A_V6, 9090)),
        TcpServer::start(&t.clia, sock(B_NET_VIA_A_V4, 9090)),
        TcpServer::start(&t.clia, sock(B_NET_VIA_A_V6, 9090)),
    ];
    let plain = conflist(&lab, NET, "1.0.0", None);
    let pod = add_pod(&lab, &t.node, &plain, "pod", "ctr1", "default");
    let to = |ip: &str| (pod.ns.as_str(), sock(ip, 9090));
    let answered = |ip: &str| {
        (
            pod.ns.as_str(),
            sock(ip, 9090),
            if ip.contains(':') { pod.v6 } else { pod.v4 },
        )
    };
    let egress = ["10.2.0.0/24", "fd00:b::/64"];

    // Without gwsteer, client B's network is out of reach.
    assert_unanswered(
        "without gwsteer: client B",
        &[to(CLIENT_B_V4), to(CLIENT_B_V6)],
    );

    let steer = conflist(
        &lab,
        NET,
        "1.0.0",
        gwsteer_keys(
            fw,
            json!([scoped(
                egress_policy("egress", 102, "0x20", &egress, &[]),
                scope
            )]),
        ),
    );
    gwsteer_call(&t.node, &steer, "ADD", &pod, Some(&pod.result)).expect_ok("gwsteer ADD");
    assert_fwmark_rules(&t.node, &[fwmark_rule(1000, "0x20", 102)], "after ADD");
    assert_default_via(&t.node, 102, [RTR_B_V4, RTR_B_V6], "eth-b", "after ADD");
    let f0 = all_flows(&routers);
    assert_answered(
        "egressTo: client B",
        &[answered(CLIENT_B_V4), answered(CLIENT_B_V6)],
    );
    let f1 = all_flows(&routers);
    assert_answered(
        "not in egressTo: client A",
        &[answered(CLIENT_A_V4), answered(CLIENT_A_V6)],
    );
    let f2 = all_flows(&routers);
    assert_paths("egressTo: to client B", &f0, &f1, &labels, &[("b", "B")]);
    assert_paths(
        "not in egressTo: to client A",
        &f1,
        &f2,
        &labels,
        &[("a", "A")],
    );
    // The addresses client A holds in client B's network are steered too,
    // to router B, which cannot reach them.
    assert_unanswered(
        "egressTo without exclude: client B's network via router A",
        &[to(B_NET_VIA_A_V4), to(B_NET_VIA_A_V6)],
    );
    let f3 = all_flows(&routers);
    assert_paths("egressTo without exclude", &f2, &f3, &labels, &[("b", "B")]);
    gwsteer_call(&t.node, &steer, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_clean("after gwsteer DEL", &t.node, &state_dir(&lab), NET);

    // exclude keeps the upper half of client B's networks on the default path.
    let steer = conflist(
        &lab,
        NET,
        "1.0.0",
        gwsteer_keys(
            fw,
            json!([scoped(
                egress_policy(
                    "egress",
                    102,
                    "0x20",
                    &egress,
                    &["10.2.0.128/25", "fd00:b::8000/113"]
                ),
                scope
            )]),
        ),
    );
    gwsteer_call(&t.node, &steer, "ADD", &pod, Some(&pod.result)).expect_ok("gwsteer ADD");
    let f4 = all_flows(&routers);
    assert_answered(
        "excluded part of egressTo: via router A",
        &[answered(B_NET_VIA_A_V4), answered(B_NET_VIA_A_V6)],
    );
    let f5 = all_flows(&routers);
    assert_answered(
        "rest of egressTo: client B",
        &[answered(CLIENT_B_V4), answered(CLIENT_B_V6)],
    );
    let f6 = all_flows(&routers);
    assert_paths(
        "excluded part of egressTo",
        &f4,
        &f5,
        &labels,
        &[("b", "A")],
    );
    assert_paths("rest of egressTo", &f5, &f6, &labels, &[("b", "B")]);
    gwsteer_call(&t.node, &steer, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_clean("after gwsteer DEL", &t.node, &state_dir(&lab), NET);
    del_pod(&t.node, &plain, &pod);
}

nftables_test!(scoped egress_by_destination, "fweg");

/// `scope: "subnet"` for connmark: the policy's set holds the pod subnet
/// (one element for every pod of it), not the pods. A pod that opts out
/// (cni-args) is an element of the opt-out set and is not steered: client
/// B's connections to it are not answered (its replies go to router A),
/// client A's are. CHECK names a subnet element deleted by hand; the last
/// DEL leaves nothing.
#[test]
fn connmark_subnet_scope_leaves_opted_out_pods_alone() {
    let (lab, t) = counted_topo("fwcmo");
    let steer = conflist(
        &lab,
        NET,
        "1.0.0",
        gwsteer_keys(
            Fw::Nftables,
            json!([scoped(
                connmark_policy("ret-b", 100, "0x14", "eth-b", RTR_B_V4, RTR_B_V6),
                Scope::Subnet
            )]),
        ),
    );
    let mut opt_out = steer.clone();
    opt_out["plugins"][1]["args"] = json!({"cni": {"gwsteer": {"steering": []}}});
    let pod = add_pod(&lab, &t.node, &steer, "pod", "ctr1", "default");
    let out = add_pod(&lab, &t.node, &opt_out, "out", "ctr2", "default");

    // Kernel objects: the subnets in the subnet set, the opted-out pod's
    // addresses in the opt-out set, no per-pod element.
    let table = format!("gwsteer-{NET}");
    let listing: Value = serde_json::from_str(&exec_in(
        &t.node,
        "nft",
        ["-j", "list", "table", "inet", &table],
    ))
    .unwrap();
    let elems = |name: &str| -> Value {
        listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("set"))
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("set {name} in {listing}"))
            .get("elem")
            .cloned()
            .unwrap_or(json!([]))
    };
    assert_eq!(
        elems("ret-b_net_v4"),
        json!([{"prefix": {"addr": "10.244.1.0", "len": 24}}])
    );
    assert_eq!(
        elems("ret-b_net_v6"),
        json!([{"prefix": {"addr": "fd00:244:0:1::", "len": 64}}])
    );
    assert_eq!(elems("ret-b_out_v4"), json!([out.v4.to_string()]));
    assert_eq!(elems("ret-b_out_v6"), json!([out.v6.to_string()]));

    let _servers = [pod.serve(), out.serve()];
    assert_answered(
        "steered pod: client B",
        &from_client(&t.clib, &pod, CLIENT_B_V4, CLIENT_B_V6),
    );
    assert_unanswered(
        "opted-out pod: client B",
        &[
            (t.clib.as_str(), out.sock4(8080)),
            (t.clib.as_str(), out.sock6(8080)),
        ],
    );
    assert_answered(
        "opted-out pod: client A",
        &from_client(&t.clia, &out, CLIENT_A_V4, CLIENT_A_V6),
    );

    // CHECK sees the subnet's element gone.
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
    exec_in(
        &t.node,
        "nft",
        [
            "delete",
            "element",
            "inet",
            &table,
            "ret-b_net_v4",
            "{ 10.244.1.0/24 }",
        ],
    );
    let err = check("CHECK, subnet element deleted").expect_err("CHECK must fail");
    assert!(err.contains("firewall subnet 10.244.1.0/24"), "{err}");

    del_pod(&t.node, &steer, &pod);
    del_pod(&t.node, &opt_out, &out);
    assert_clean("after DEL", &t.node, &state_dir(&lab), NET);
}

// ---- 4. masquerade exemption ----

const PEER_V4: &str = "172.16.0.2";
const PEER_V6: &str = "fd00:16::2";
const NODE_V4: &str = "172.16.0.1";
const NODE_V6: &str = "fd00:16::1";

/// A node that masquerades like kindnet (`masq`), a peer outside it
/// (`eth-p`), a pod on cni0. The peer sees the pod's own addresses only
/// while gwsteer's `masqueradeExemption` is on; without gwsteer, and after
/// the DEL of the last pod, it sees the node's. With `chains:
/// ["KIND-MASQ-AGENT"]` the exemption's RETURN is the first rule of that
/// chain (both families), and the chain is as before after DEL.
///
/// The masquerade is made before the exemption, as on a node where kindnet
/// runs before any pod, and then once more after it: the exemption still
/// wins (its nat chain runs at srcnat − 10, before every masquerade at
/// srcnat, whether iptables-legacy, iptables-nft or nftables made it).
fn masquerade_exemption(fw: Fw, masq: Masq, tag: &str) {
    let lab = Lab::new(tag);
    let node = lab.router("node");
    let peer = lab.netns("peer");
    wire(
        &lab,
        (
            &node,
            "eth-p",
            &[&format!("{NODE_V4}/24"), &format!("{NODE_V6}/64")],
        ),
        (
            &peer,
            "eth0",
            &[&format!("{PEER_V4}/24"), &format!("{PEER_V6}/64")],
        ),
    );
    lab.route(&peer, &["add", CLUSTER_V4, "via", NODE_V4]);
    lab.route(&peer, &["add", CLUSTER_V6, "via", NODE_V6]);
    let _servers = [
        TcpServer::start(&peer, sock(PEER_V4, 8080)),
        TcpServer::start(&peer, sock(PEER_V6, 8080)),
    ];
    let to = [sock(PEER_V4, 8080), sock(PEER_V6, 8080)];
    let node_addrs = [addr(NODE_V4), addr(NODE_V6)];
    let state = state_dir(&lab);

    masq.install(&lab, &node);
    let original = masq.chain(&node);
    let plain = conflist(&lab, NET, "1.0.0", None);
    let pod = add_pod(&lab, &node, &plain, "pod", "ctr1", "default");
    let pod_addrs = [pod.v4, pod.v6];
    assert_eq!(
        seen_by_peer(&pod.ns, to),
        node_addrs,
        "{masq:?} masquerade, no gwsteer: the peer sees the node"
    );

    // `true`: the pod's subnets, as prevResult has them.
    let on = conflist(
        &lab,
        NET,
        "1.0.0",
        Some(json!({"firewallBackend": fw.name(), "masqueradeExemption": true})),
    );
    gwsteer_call(&node, &on, "ADD", &pod, Some(&pod.result)).expect_ok("gwsteer ADD");
    assert_eq!(
        seen_by_peer(&pod.ns, to),
        pod_addrs,
        "{masq:?} masquerade, exemption on: the peer sees the pod"
    );
    assert_eq!(
        masq.chain(&node),
        original,
        "without `chains`, {MASQ_CHAIN} is left alone"
    );
    gwsteer_call(&node, &on, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_eq!(
        seen_by_peer(&pod.ns, to),
        node_addrs,
        "{masq:?} masquerade, after DEL of the last pod: the peer sees the node"
    );
    assert_clean("after gwsteer DEL", &node, &state, NET);

    if let Some((orig4, orig6)) = original.clone() {
        let with_chain = conflist(
            &lab,
            NET,
            "1.0.0",
            Some(json!({
                "firewallBackend": fw.name(),
                "masqueradeExemption": {"chains": [MASQ_CHAIN]},
            })),
        );
        gwsteer_call(&node, &with_chain, "ADD", &pod, Some(&pod.result)).expect_ok("gwsteer ADD");
        assert_eq!(
            seen_by_peer(&pod.ns, to),
            pod_addrs,
            "{masq:?} masquerade, exemption with chains: the peer sees the pod"
        );
        let (now4, now6) = masq.chain(&node).expect("iptables kind");
        for (now, orig, subnet) in [(now4, orig4, POD_V4), (now6, orig6, POD_V6)] {
            let first = now.first().map(String::as_str).unwrap_or_default();
            assert!(
                first.starts_with(&format!("-A {MASQ_CHAIN} -s {subnet} "))
                    && first.contains(&format!("gwsteer:{NET}"))
                    && first.ends_with("-j RETURN"),
                "{masq:?}: the first rule of {MASQ_CHAIN} is not gwsteer's RETURN for {subnet}: {now:#?}"
            );
            assert_eq!(now[1..], orig[..], "{masq:?}: the rest of {MASQ_CHAIN}");
        }
        gwsteer_call(&node, &with_chain, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
        assert_eq!(
            masq.chain(&node),
            original,
            "{masq:?}: {MASQ_CHAIN} after DEL"
        );
        assert_eq!(
            seen_by_peer(&pod.ns, to),
            node_addrs,
            "{masq:?} masquerade, after DEL (chains): the peer sees the node"
        );
        assert_clean("after gwsteer DEL (chains)", &node, &state, NET);
    }

    // The masquerade made after the exemption.
    masq.uninstall(&lab, &node);
    gwsteer_call(&node, &on, "ADD", &pod, Some(&pod.result)).expect_ok("gwsteer ADD");
    masq.install(&lab, &node);
    assert_eq!(
        seen_by_peer(&pod.ns, to),
        pod_addrs,
        "{masq:?} masquerade made after the exemption: the peer sees the pod"
    );
    gwsteer_call(&node, &on, "DEL", &pod, Some(&pod.result)).expect_ok("gwsteer DEL");
    assert_eq!(
        seen_by_peer(&pod.ns, to),
        node_addrs,
        "{masq:?} masquerade made after the exemption, after DEL: the peer sees the node"
    );
    assert_clean(
        "after gwsteer DEL (masquerade made after)",
        &node,
        &state,
        NET,
    );
    del_pod(&node, &plain, &pod);
}

mod masquerade_exemption {
    use super::*;

    #[test]
    fn iptables_legacy_masquerade_nftables() {
        masquerade_exemption(Fw::Nftables, Masq::Legacy, "fwmxln");
    }

    #[test]
    fn iptables_nft_masquerade_nftables() {
        masquerade_exemption(Fw::Nftables, Masq::XtNft, "fwmxnn");
    }

    #[test]
    fn nftables_masquerade_nftables() {
        masquerade_exemption(Fw::Nftables, Masq::Nftables, "fwmnn");
    }
}

// ---- 5. rule count ----

fn census_policies(fw: Fw) -> Value {
    json!({
        "firewallBackend": fw.name(),
        "steering": [
            connmark_policy("ret", 100, "0x14", "eth-b", RTR_B_V4, RTR_B_V6),
            egress_policy(
                "egr",
                102,
                "0x20",
                &["10.2.0.0/24", "fd00:b::/64"],
                &["10.2.0.128/25", "fd00:b::8000/113"],
            ),
        ],
    })
}

/// A connmark and a mark policy with 1, 100 and 500 pods attached (gwsteer
/// invoked with synthetic prevResults): the node holds the same ip rules
/// (both families) and the same firewall rules; only the member sets grow,
/// to one element per pod. DEL of all leaves nothing; nor does GC with no
/// valid attachment after a second round of ADDs.
fn rule_count(fw: Fw, tag: &str) {
    let lab = Lab::new(tag);
    let (node, _rtrb) = node_with_router_b(&lab);
    let state = state_dir(&lab);
    let config = gwsteer_config(NET, &state, census_policies(fw));
    let mut censuses: Vec<(u32, Census)> = Vec::new();
    let mut attached = 0;
    for pods in [1u32, 100, 500] {
        run_all(
            &node,
            (attached..pods).map(|i| Call::add(&config, i)).collect(),
        );
        attached = pods;
        let sets = member_sets(&node, fw, NET);
        assert_eq!(sets.len(), 4, "{pods} pods: member sets {sets:?}");
        assert!(
            sets.values().all(|n| *n == pods as usize),
            "{pods} pods: member set sizes {sets:?}"
        );
        censuses.push((pods, Census::take(&node)));
    }
    let first = censuses[0].1.clone();
    for (pods, census) in &censuses {
        assert_eq!(census, &first, "rules with {pods} pods and with 1 pod");
    }
    assert_fwmark_rules(
        &node,
        &[
            fwmark_rule(1000, "0x14", 100),
            fwmark_rule(1010, "0x20", 102),
        ],
        "500 pods",
    );
    assert!(
        first.firewall_rules(fw, NET) > 0,
        "no firewall rule of the {fw:?} backend counted: {first:?}"
    );

    run_all(&node, (0..500).map(|i| Call::del(&config, i)).collect());
    assert_clean("after DEL of 500 pods", &node, &state, NET);

    run_all(&node, (0..20).map(|i| Call::add(&config, i)).collect());
    assert_member_sets(&node, fw, 20, "20 pods");
    assert_eq!(Census::take(&node), first, "rules with 20 pods");
    run_one(&node, Call::gc(&config, &[])).expect_ok("GC");
    assert_clean("after GC with no valid attachment", &node, &state, NET);
}

nftables_test!(rule_count, "fwcnt");

// ---- 6. sysctls ----

const SRC_VALID_MARK: &str = "net.ipv4.conf.all.src_valid_mark";
const MULTIPATH_USE_NEIGH: &str = "net.ipv4.fib_multipath_use_neigh";

/// src_valid_mark is 1 while a mark or connmark pod is attached and back to
/// its previous value (0) after the last DEL, also when two networks need
/// it; fib_multipath_use_neigh likewise with a multipath policy. A value
/// that was already 1 stays 1.
fn sysctls(fw: Fw, tag: &str) {
    let lab = Lab::new(tag);
    let (node, _rtrb) = node_with_router_b(&lab);
    let state = state_dir(&lab);
    let values = || {
        (
            lab.read_sysctl(&node, SRC_VALID_MARK),
            lab.read_sysctl(&node, MULTIPATH_USE_NEIGH),
        )
    };
    let both = |v: &str| (v.to_string(), v.to_string());
    let set = |svm: &str, mpn: &str| {
        lab.sysctls(&node, &[(SRC_VALID_MARK, svm), (MULTIPATH_USE_NEIGH, mpn)]);
    };
    set("0", "0");

    let mark = fw_config(
        fw,
        NET,
        &state,
        json!([egress_policy("egr", 102, "0x20", &["10.2.0.0/24"], &[])]),
    );
    run_all(&node, vec![Call::add(&mark, 0), Call::add(&mark, 1)]);
    assert_eq!(values(), ("1".into(), "0".into()), "mark: two pods");
    run_one(&node, Call::del(&mark, 0)).expect_ok("DEL");
    assert_eq!(values(), ("1".into(), "0".into()), "mark: one pod left");
    run_one(&node, Call::del(&mark, 1)).expect_ok("DEL");
    assert_eq!(values(), both("0"), "mark: after the last DEL");
    assert_clean("mark: after the last DEL", &node, &state, NET);

    // A connmark policy with two IPv4 gateways: one multipath route.
    let multipath = fw_config(
        fw,
        NET,
        &state,
        json!([{
            "name": "ret", "table": 100, "match": "connmark", "mark": "0x14",
            "ingressInterfaces": ["eth-b"],
            "gateways": [{"via": RTR_B_V4}, {"via": "192.168.2.3"}, {"via": RTR_B_V6}],
        }]),
    );
    run_one(&node, Call::add(&multipath, 0)).expect_ok("ADD");
    assert_eq!(values(), both("1"), "multipath connmark: attached");
    let v4 = table(&node, Family::V4, 100);
    assert!(
        v4.len() == 1 && v4[0]["nexthops"].as_array().is_some_and(|n| n.len() == 2),
        "multipath route in table 100: {v4:?}"
    );
    run_one(&node, Call::del(&multipath, 0)).expect_ok("DEL");
    assert_eq!(values(), both("0"), "multipath connmark: after DEL");

    // Values gwsteer found set are not its to restore.
    set("1", "1");
    run_one(&node, Call::add(&multipath, 0)).expect_ok("ADD");
    run_one(&node, Call::del(&multipath, 0)).expect_ok("DEL");
    assert_eq!(
        values(),
        both("1"),
        "already 1 before ADD: still 1 after DEL"
    );
    set("0", "0");

    // Two networks (one state dir, as on a node) share the node's sysctl
    // (each with its own table and rule priority: CONTRACT 4).
    let other = "fwsteer2";
    let mut ret = connmark_policy("ret", 101, "0x15", "eth-b", RTR_B_V4, RTR_B_V6);
    ret["priority"] = json!(1100);
    let connmark = fw_config(fw, other, &state, json!([ret]));
    run_one(&node, Call::add(&mark, 0)).expect_ok("ADD");
    run_one(&node, Call::add(&connmark, 0)).expect_ok("ADD");
    assert_eq!(values(), ("1".into(), "0".into()), "two networks attached");
    run_one(&node, Call::del(&mark, 0)).expect_ok("DEL");
    assert_eq!(
        values(),
        ("1".into(), "0".into()),
        "the other network still attached"
    );
    run_one(&node, Call::del(&connmark, 0)).expect_ok("DEL");
    assert_eq!(values(), both("0"), "after the last DEL of both networks");
    assert_clean("two networks: after DEL", &node, &state, NET);
    assert_clean("two networks: after DEL", &node, &state, other);
}

nftables_test!(sysctls, "fwsys");

// ---- 7. DEL and GC leave nothing ----

/// Every kind of firewall object (connmark, mark with egressTo and exclude,
/// a masquerade exemption with RETURNs in kindnet's chains of both iptables
/// variants): while pods are attached they are there; after the DEL of the
/// last pod, and after a GC, nothing of gwsteer's is left (no nftables table
/// `gwsteer-*`, no `GWS-` chain, no `gwsteer:` comment, no rule or route)
/// and the node's rules, routes and firewall are exactly as before.
fn del_and_gc_leave_nothing(fw: Fw, tag: &str) {
    let lab = Lab::new(tag);
    let (node, _rtrb) = node_with_router_b(&lab);
    let state = state_dir(&lab);
    Masq::Legacy.install(&lab, &node);
    Masq::XtNft.install(&lab, &node);
    // Built-in tables and chains that iptables makes on first use (and
    // iptables-nft leaves when they empty) are not gwsteer's: make them
    // before the reference snapshot.
    for tool in [
        "iptables-legacy",
        "ip6tables-legacy",
        "iptables-nft",
        "ip6tables-nft",
    ] {
        lab.exec(&node, tool, ["-t", "mangle", "-N", "TEST-MANGLE"]);
        for chain in ["PREROUTING", "FORWARD"] {
            lab.exec(
                &node,
                tool,
                ["-t", "mangle", "-A", chain, "-j", "TEST-MANGLE"],
            );
        }
    }
    let before = snapshot(&node);
    let mut keys = census_policies(fw);
    keys["masqueradeExemption"] = json!({"chains": [MASQ_CHAIN]});
    let config = gwsteer_config(NET, &state, keys);

    // Round 1: DEL.
    run_all(&node, (0..3).map(|i| Call::add(&config, i)).collect());
    let objects = firewall_objects(&node);
    assert!(
        objects
            .iter()
            .any(|o| o.contains(&format!("gwsteer-{NET}"))),
        "no nftables table: {objects:#?}"
    );
    for program in XT_SAVES {
        let returns = objects
            .iter()
            .filter(|o| o.starts_with(&format!("{program}: -A {MASQ_CHAIN} ")))
            .count();
        assert_eq!(
            returns, 1,
            "{program}: gwsteer RETURNs in {MASQ_CHAIN}: {objects:#?}"
        );
    }
    run_one(&node, Call::del(&config, 0)).expect_ok("DEL");
    run_one(&node, Call::del(&config, 1)).expect_ok("DEL");
    assert_eq!(
        firewall_objects(&node),
        objects,
        "one pod left: the node-level objects stay"
    );
    assert_member_sets(&node, fw, 1, "one pod left");
    run_one(&node, Call::del(&config, 2)).expect_ok("DEL");
    assert_clean("after DEL of the last pod", &node, &state, NET);
    assert_same_state("after DEL of the last pod", &before, &snapshot(&node));

    // Round 2: GC.
    run_all(&node, (0..3).map(|i| Call::add(&config, i)).collect());
    run_one(&node, Call::gc(&config, &[1])).expect_ok("GC keeping pod 1");
    assert_eq!(records(&state, NET), vec!["ctr1@eth0.json"]);
    assert_eq!(
        firewall_objects(&node),
        objects,
        "GC keeping one pod: the node-level objects stay"
    );
    assert_member_sets(&node, fw, 1, "GC keeping one pod");
    run_one(&node, Call::gc(&config, &[])).expect_ok("GC");
    assert_clean("after GC with no valid attachment", &node, &state, NET);
    assert_same_state("after GC", &before, &snapshot(&node));
}

nftables_test!(del_and_gc_leave_nothing, "fwdel");

/// A DEL that deleted nf_tables objects (a policy's last pod) does not wait
/// for the kernel to free them: gwsteer's nf_tables socket hands its
/// release to the kernel, whose release flushes nf_tables' destroy work (an
/// RCU grace period) under the commit mutex. Timed at the socket: a plain
/// close after a deleting commit against a handed-over one; and the
/// handed-over sockets are released, soon.
#[test]
fn closing_after_a_deletion_does_not_wait_for_the_kernel_to_free_it() {
    let lab = Lab::new("fwclose");
    let ns = lab.netns("n");
    nfclose::assert_close_after_delete_does_not_wait(&ns);
}
