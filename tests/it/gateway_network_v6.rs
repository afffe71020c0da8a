//! The gateway network (CONTRACT 3.2) over an IPv6-only underlay, against
//! the real kernel: two nodes whose only addresses on the underlay are
//! IPv6 (`nodad`, FIELD-NOTES), joined by gwsteer's VXLAN with IPv6 unicast
//! remotes or an IPv6 multicast group. Debian's `bridge` + `host-local` +
//! gwsteer put a client pod on node A and a router pod on node B; the
//! client's own default paths are dead ends, so it reaches an outside
//! server only through the router pod, which forwards and masquerades
//! IPv6 (and IPv4 on a dual-stack gateway network). The MTU is the
//! underlay's less 70 everywhere, and exactly that crosses the VXLAN. CHECK
//! names a deleted VXLAN, `reconcile` re-makes it, DEL puts the pods back
//! and `gwsteer cleanup` leaves nothing.

use std::net::IpAddr;
use std::time::Duration;

use crate::support::gwnet::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "gwnet6";
const SUBNET4: &str = "192.168.50.0/24";
const SUBNET6: &str = "fd00:50::/64";
const ROUTER4: &str = "192.168.50.254";
const ROUTER6: &str = "fd00:50::fe";
const OUTSIDE4: &str = "10.99.0.1";
const OUTSIDE6: &str = "fd00:99::1";
const ROUTER_ETH0_4: &str = "10.99.0.2";
const ROUTER_ETH0_6: &str = "fd00:99::2";
const DEAD_END4: &str = "10.98.0.1";
const DEAD_END6: &str = "fd00:98::1";
const KEEP4: &str = "10.97.0.0/16";
const KEEP6: &str = "fd00:97::/64";
/// The nodes' underlay addresses (IPv6 only).
const UNDER: [&str; 2] = ["fd00:200::1", "fd00:200::2"];
/// 1500 − 70 (outer IPv6 40 + UDP 8 + VXLAN 8 + Ethernet 14).
const MTU: u64 = 1430;

/// Which families the gateway network itself carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stack {
    Dual,
    V6Only,
}

/// Debian's bridge + host-local (`ranges`) + gwsteer.
fn conflist(lab: &Lab, node: &str, ranges: Value, gateway_network: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "gwbr0",
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "dataDir": lab.subdir(&format!("ipam-{node}")),
                },
            },
            gwsteer_plugin(&lab.subdir(&format!("state-{node}")), json!({
                "logLevel": "debug",
                "gatewayNetwork": gateway_network,
            })),
        ],
    })
}

/// host-local ranges: `v4` and `v6` are (start, end) of each family's range.
fn ranges(stack: Stack, v4: (&str, &str), v6: (&str, &str)) -> Value {
    let r6 = json!([{"subnet": SUBNET6, "rangeStart": v6.0, "rangeEnd": v6.1}]);
    match stack {
        Stack::Dual => json!([
            [{"subnet": SUBNET4, "rangeStart": v4.0, "rangeEnd": v4.1}],
            r6
        ]),
        Stack::V6Only => json!([r6]),
    }
}

/// ADD of pod netns `pod` as container `id`, pod `pod-<id>`.
fn add(node: &str, conflist: &Value, id: &str, pod: &str) -> Attached {
    let args = k8s_cni_args("default", &format!("pod-{id}"), id);
    gwnet::add(node, conflist, id, pod, args)
}

fn main_routes(ns: &str) -> Vec<Value> {
    let mut r = routes(ns, Family::V4, "main");
    r.extend(routes(ns, Family::V6, "main"));
    r.sort_by_key(|v| v.to_string());
    r
}

fn state_dir(lab: &Lab, name: &str) -> std::path::PathBuf {
    lab.tmpdir().join(format!("state-{name}"))
}

fn cli(node: &str, state: &std::path::Path, args: &[&str]) -> CniOutcome {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--state-dir", state.to_str().unwrap()]);
    gwsteer_cli(node, &full)
}

/// A client pod whose own default routes (both families) lead nowhere.
fn dead_end_pod(lab: &Lab) -> String {
    let (pod, _dead) = pod_with_peer(
        lab,
        ("client", &["10.98.0.2/24", "fd00:98::2/64"]),
        (
            "dead",
            &[&format!("{DEAD_END4}/24"), &format!("{DEAD_END6}/64")],
        ),
        &[DEAD_END4, DEAD_END6],
    );
    pod
}

/// The router pod's primary network: eth0 to an outside server's namespace.
fn router_pod(lab: &Lab) -> (String, String) {
    pod_with_peer(
        lab,
        (
            "router",
            &[
                &format!("{ROUTER_ETH0_4}/24"),
                &format!("{ROUTER_ETH0_6}/64"),
            ],
        ),
        (
            "outside",
            &[&format!("{OUTSIDE4}/24"), &format!("{OUTSIDE6}/64")],
        ),
        &[OUTSIDE4, OUTSIDE6],
    )
}

/// Two nodes on an IPv6-only underlay segment (a third namespace is the
/// switch, multicast snooping off), each with an IPv6 default route.
fn ipv6_underlay(lab: &Lab) -> Vec<String> {
    let nodes = underlay(
        lab,
        [&format!("{}/64", UNDER[0]), &format!("{}/64", UNDER[1])],
        "fd00:200::fe",
    );
    for node in &nodes {
        assert!(
            addrs(node, "under0").iter().all(|a| a.addr().is_ipv6()),
            "an IPv6-only underlay"
        );
    }
    nodes
}

fn two_nodes(tag: &str, stack: Stack, vxlan: Value, unicast: bool) {
    let lab = Lab::new(tag);
    let nodes = ipv6_underlay(&lab);
    let (nodea, nodeb) = (&nodes[0], &nodes[1]);
    let client = dead_end_pod(&lab);
    let (router, outside) = router_pod(&lab);
    let server6 = TcpServer::start(&outside, sock(OUTSIDE6, 8080));
    let server4 = TcpServer::start(&outside, sock(OUTSIDE4, 8080));
    let client_before = main_routes(&client);
    assert!(tcp_pong(&client, server6.addr(), Duration::from_secs(1)).is_err());
    assert!(tcp_pong(&client, server4.addr(), Duration::from_secs(1)).is_err());

    let routers = match stack {
        Stack::Dual => json!([ROUTER4, ROUTER6]),
        Stack::V6Only => json!(ROUTER6),
    };
    let gw = json!({"router": routers, "keep": [KEEP4, KEEP6], "vxlan": vxlan});
    let conf_a = conflist(
        &lab,
        "nodea",
        ranges(
            stack,
            ("192.168.50.10", "192.168.50.99"),
            ("fd00:50::10", "fd00:50::99"),
        ),
        gw.clone(),
    );
    let conf_b = conflist(
        &lab,
        "nodeb",
        ranges(stack, (ROUTER4, ROUTER4), (ROUTER6, ROUTER6)),
        gw,
    );
    let r = add(nodeb, &as_router(&conf_b), "rtr", &router);
    let c = add(nodea, &conf_a, "cli", &client);

    // Infrastructure on each node: an IPv6 VXLAN from the node's own
    // underlay address, at underlay − 70.
    for (i, node) in nodes.iter().enumerate() {
        let vx = link(node, "gwvx0");
        let data = &vx["linkinfo"]["info_data"];
        assert_eq!(vx["mtu"], MTU, "{node}: {vx}");
        assert_eq!(vx["master"], "gwbr0", "{node}");
        assert_eq!(vx["ifalias"], "gwsteer", "{node}");
        assert_eq!(data["local6"], UNDER[i], "{node}: {vx}");
        assert_eq!(data["link"], "under0", "{node}: {vx}");
        assert!(vx["flags"].as_array().unwrap().contains(&json!("UP")));
        assert_eq!(mtu(node, "gwbr0"), MTU, "{node}");
        if unicast {
            assert_eq!(
                flood_list(node),
                vec![UNDER[1 - i].to_string()],
                "{node}: its own address skipped"
            );
        } else {
            assert_eq!(data["group6"], "ff05::4343", "{node}: {vx}");
        }
    }
    assert_eq!(mtu(&client, "net1"), MTU);
    assert_eq!(mtu(&router, "net1"), MTU);

    wait_for(
        "client reaches the router over the IPv6 VXLAN",
        Duration::from_secs(10),
        || ping(&client, ROUTER6, None, false),
    );
    // The path MTU exactly: 1430 − 48 (IPv6 + ICMPv6 headers) passes.
    assert!(ping(&client, ROUTER6, Some(1382), true), "DF ping6 of 1430");
    assert!(!ping(&client, ROUTER6, Some(1383), true), "one byte over");
    if stack == Stack::Dual {
        wait_for("IPv4 over the IPv6 VXLAN", Duration::from_secs(10), || {
            ping(&client, ROUTER4, None, false)
        });
        assert!(ping(&client, ROUTER4, Some(1402), true), "DF ping of 1430");
        assert!(!ping(&client, ROUTER4, Some(1403), true), "one byte over");
    }
    // 1430 is what the VXLAN carries, not only what the pod sends: a pod
    // left at 1500 loses the next byte at the VXLAN (and CHECK names it).
    let host_veth = c.result["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ip(&client, ["link", "set", "net1", "mtu", "1500"]);
    lab.ip(nodea, ["link", "set", &host_veth, "mtu", "1500"]);
    assert!(ping(&client, ROUTER6, Some(1382), true));
    assert!(
        !ping(&client, ROUTER6, Some(1383), true),
        "a 1431-byte packet must not cross the VXLAN"
    );
    let drift = c.check().expect_err("CHECK sees the MTU drift");
    assert!(
        drift
            .error_msg()
            .unwrap_or("")
            .contains("link net1 mtu 1430"),
        "{drift}"
    );
    lab.ip(&client, ["link", "set", "net1", "mtu", "1430"]);
    lab.ip(nodea, ["link", "set", &host_veth, "mtu", "1430"]);

    // The client's connections leave by the router pod on the other node,
    // masqueraded to the router's own address.
    let pong = tcp_pong(&client, server6.addr(), Duration::from_secs(3))
        .expect("client to the outside over IPv6");
    assert_eq!(pong.peer, ROUTER_ETH0_6.parse::<IpAddr>().unwrap());
    let v4 = tcp_pong(&client, server4.addr(), Duration::from_secs(2));
    match stack {
        Stack::Dual => assert_eq!(
            v4.expect("client to the outside over IPv4").peer,
            ROUTER_ETH0_4.parse::<IpAddr>().unwrap()
        ),
        Stack::V6Only => assert!(v4.is_err(), "IPv4 stays on its dead end"),
    }

    // What the client has: the default(s) via the router on net1, the kept
    // CIDRs of the router's families on their previous paths.
    let routes = main_routes(&client);
    let via = |dst: &str| -> Vec<(String, String)> {
        routes
            .iter()
            .filter(|r| r["dst"] == dst && r["protocol"] != "kernel")
            .map(|r| {
                (
                    r["gateway"].as_str().unwrap_or("").to_string(),
                    r["dev"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let defaults = via("default");
    assert!(
        defaults.contains(&(ROUTER6.into(), "net1".into())),
        "{routes:?}"
    );
    assert_eq!(via(KEEP6), vec![(DEAD_END6.into(), "eth0".into())]);
    match stack {
        Stack::Dual => {
            assert!(defaults.contains(&(ROUTER4.into(), "net1".into())));
            assert_eq!(via(KEEP4), vec![(DEAD_END4.into(), "eth0".into())]);
        }
        Stack::V6Only => {
            assert!(defaults.contains(&(DEAD_END4.into(), "eth0".into())));
            assert!(via(KEEP4).is_empty(), "no IPv4 router, nothing to keep");
        }
    }
    assert_eq!(defaults.len(), 2, "{routes:?}");
    let fwd4 = if stack == Stack::Dual { "1" } else { "0" };
    assert_eq!(lab.read_sysctl(&router, "net.ipv4.ip_forward"), fwd4);
    assert_eq!(
        lab.read_sysctl(&router, "net.ipv6.conf.all.forwarding"),
        "1"
    );
    assert!(nft_tables(&router).contains(&"gwsteer-router-net1".to_string()));
    c.check().unwrap_or_else(|o| panic!("CHECK client: {o}"));
    r.check().unwrap_or_else(|o| panic!("CHECK router: {o}"));

    // A VXLAN deleted behind gwsteer's back: CHECK names it, reconcile
    // re-makes it (with its IPv6 source and flood list), traffic resumes.
    lab.ip(nodea, ["link", "del", "gwvx0"]);
    let gone = c.check().expect_err("CHECK sees the missing VXLAN");
    assert!(
        gone.error_msg()
            .unwrap_or("")
            .contains("link gwvx0 type vxlan"),
        "{gone}"
    );
    let fixed = cli(nodea, &state_dir(&lab, "nodea"), &["reconcile", "--once"]);
    assert!(!fixed.success(), "reconcile reports the repair: {fixed}");
    assert_eq!(
        link(nodea, "gwvx0")["linkinfo"]["info_data"]["local6"],
        UNDER[0]
    );
    if unicast {
        assert_eq!(flood_list(nodea), vec![UNDER[1].to_string()]);
    }
    c.check()
        .unwrap_or_else(|o| panic!("CHECK client after reconcile: {o}"));
    wait_for(
        "traffic over the re-made VXLAN",
        Duration::from_secs(10),
        || ping(&client, ROUTER6, Some(1382), true),
    );

    // DEL puts the pods back exactly.
    c.del();
    r.del();
    assert_eq!(
        main_routes(&client),
        client_before,
        "client routes after DEL"
    );
    assert!(tcp_pong(&client, server6.addr(), Duration::from_secs(1)).is_err());
    assert_eq!(lab.read_sysctl(&router, "net.ipv4.ip_forward"), "0");
    assert_eq!(
        lab.read_sysctl(&router, "net.ipv6.conf.all.forwarding"),
        "0"
    );
    assert!(!nft_tables(&router).iter().any(|t| t.starts_with("gwsteer")));
    // Infrastructure stays until cleanup.
    assert_eq!(link(nodea, "gwvx0")["ifalias"], "gwsteer");
    for (node, name) in [(nodea, "nodea"), (nodeb, "nodeb")] {
        let state = state_dir(&lab, name);
        let out = cli(node, &state, &["cleanup"]);
        assert!(out.success(), "cleanup: {out}");
        assert_nothing_left(node, &state);
    }
}

#[test]
fn dual_stack_over_ipv6_unicast_remotes() {
    two_nodes(
        "gw6uni",
        Stack::Dual,
        json!({"vni": 4342, "remotes": UNDER}),
        true,
    );
}

#[test]
fn ipv6_only_over_an_ipv6_multicast_group() {
    two_nodes(
        "gw6multi",
        Stack::V6Only,
        json!({"vni": 4343, "group": "ff05::4343", "underlay": "under0"}),
        false,
    );
}

/// Refusals name what is wrong: an underlay without a usable global IPv6
/// address (none: config error; only a tentative one: try again later),
/// and remotes of both families.
#[test]
fn ipv6_vxlan_refusals_name_the_device_and_the_field() {
    let lab = Lab::new("gw6bad");
    let node = lab.netns("node");
    let peer = lab.netns("peer");
    lab.veth(&node, "under0", &peer, "under0");
    let pod = lab.netns("pod");
    let state = lab.subdir("state");
    let conf = |vxlan: Value| {
        json!({
            "cniVersion": "1.0.0",
            "name": NET,
            "plugins": [
                {"type": "ptp", "ipMasq": false, "ipam": {
                    "type": "host-local", "ranges": [[{"subnet": SUBNET6}]],
                    "dataDir": lab.subdir("ipam")}},
                gwsteer_plugin(&state, json!({"gatewayNetwork": {
                    "role": "none", "vxlan": vxlan}})),
            ],
        })
    };
    let try_add = |c: &Value| {
        let out = conflist_add(&node, c, "bad", &netns_path(&pod), "net1", None)
            .expect_err("ADD is refused");
        conflist_del(&node, c, "bad", Some(&netns_path(&pod)), "net1", None, None)
            .unwrap_or_else(|o| panic!("DEL after a refused ADD: {o}"));
        out
    };
    let unicast = conf(json!({"vni": 9, "remotes": UNDER, "underlay": "under0"}));
    // Only a link-local address.
    let out = try_add(&unicast);
    assert_eq!(out.error_code(), Some(7), "{out}");
    let msg = out.error_msg().unwrap_or("");
    assert!(
        msg.starts_with("gatewayNetwork.vxlan.underlay: under0 has no usable global IPv6 address")
            && msg.contains("fe80::"),
        "{out}"
    );
    // A global address still doing duplicate address detection (the link
    // has no carrier, so it stays tentative).
    lab.ip(&peer, ["link", "set", "under0", "down"]);
    lab.sysctl(&node, "net.ipv6.conf.under0.accept_dad", "1");
    lab.ip(
        &node,
        ["-6", "addr", "add", "fd00:200::1/64", "dev", "under0"],
    );
    let out = try_add(&unicast);
    assert_eq!(out.error_code(), Some(11), "{out}");
    assert!(
        out.error_msg()
            .unwrap_or("")
            .contains("fd00:200::1/64 tentative"),
        "{out}"
    );
    // One VXLAN, one underlay family.
    let mixed = conf(json!({"vni": 9, "remotes": ["fd00:200::1", "10.200.0.2"]}));
    let out = try_add(&mixed);
    assert_eq!(out.error_code(), Some(7), "{out}");
    assert!(
        out.error_msg().unwrap_or("").starts_with(
            "gatewayNetwork.vxlan.remotes[1]: 10.200.0.2 is not of the same address family"
        ),
        "{out}"
    );
    assert!(marked_links(&node).is_empty(), "nothing made");
}
