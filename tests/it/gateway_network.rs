//! The gateway network (CONTRACT 3.2) against the real kernel: Debian's
//! `bridge` + `host-local` + gwsteer put a client pod and a router pod on
//! one L2 segment — on one node, and on two nodes joined by gwsteer's VXLAN
//! (unicast remotes, multicast group). Proven with real traffic: the
//! client's own default path is a dead end, so its connections to an
//! outside server work only through the router pod, which masquerades them;
//! DF pings at the path MTU and a 1 MB transfer across the VXLAN; the
//! router sees the client's own address through a kindnet-like masquerade
//! only because of the exemption. DEL puts the pods back exactly; DEL of all
//! pods then `gwsteer cleanup` leaves nothing of gwsteer's.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::support::gwnet::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "gwnet";
const SUBNET: &str = "192.168.50.0/24";
const ROUTER: &str = "192.168.50.254";
const OUTSIDE: &str = "10.99.0.1";
const ROUTER_ETH0: &str = "10.99.0.2";
const CLIENT_ETH0: &str = "10.98.0.2";
const DEAD_END: &str = "10.98.0.1";
const KEEP: &str = "10.97.0.0/16";

/// Debian's bridge + host-local (one range of the gateway subnet) + gwsteer.
fn conflist(
    lab: &Lab,
    node: &str,
    range: (&str, &str),
    bridge_ip: bool,
    gateway_network: Value,
) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "gwbr0",
                "isGateway": bridge_ip,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET, "rangeStart": range.0, "rangeEnd": range.1}]],
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

/// ADD of pod `pod` in the router role (Multus cni-args with `IP=`).
fn add_router(node: &str, conflist: &Value, id: &str, pod: &str) -> Attached {
    add(node, &as_router(conflist), id, pod, router_args(id))
}

fn client_args(id: &str) -> String {
    k8s_cni_args("default", &format!("client-{id}"), id)
}

fn router_args(id: &str) -> String {
    format!("{};IP={ROUTER}", k8s_cni_args("default", "router", id))
}

/// A pod whose own default route leads nowhere: its eth0 goes to a
/// namespace that does not forward.
fn dead_end_pod(lab: &Lab, name: &str) -> String {
    let (pod, _dead) = pod_with_peer(
        lab,
        (name, &[&format!("{CLIENT_ETH0}/24")]),
        (&format!("{name}-dead"), &[&format!("{DEAD_END}/24")]),
        &[DEAD_END],
    );
    pod
}

/// The router pod's primary network: eth0 to an outside server's namespace.
fn router_pod(lab: &Lab) -> (String, String) {
    pod_with_peer(
        lab,
        ("router", &[&format!("{ROUTER_ETH0}/24")]),
        ("outside", &[&format!("{OUTSIDE}/24")]),
        &[OUTSIDE],
    )
}

fn main_routes(ns: &str) -> Vec<Value> {
    let mut r = routes(ns, Family::V4, "main");
    r.sort_by_key(|v| v.to_string());
    r
}

fn cleanup(node: &str, state: &std::path::Path) {
    let out = gwsteer_cli(node, &["cleanup", "--state-dir", state.to_str().unwrap()]);
    assert!(out.success(), "cleanup: {out}");
}

/// `iptables` in `ns`, panicking on failure.
fn iptables(ns: &str, args: &[&str]) {
    exec_in(ns, "iptables", args);
}

#[test]
fn single_node_client_reaches_the_outside_through_the_router_pod() {
    let lab = Lab::new("gwsingle");
    let node = lab.netns("node");
    let client = dead_end_pod(&lab, "client");
    let (router, outside) = router_pod(&lab);
    let server = TcpServer::start(&outside, sock(OUTSIDE, 8080));
    // A kindnet-like masquerade agent on the node, with bridged traffic
    // going through iptables (br_netfilter).
    lab.sysctl(&node, "net.bridge.bridge-nf-call-iptables", "1");
    iptables(&node, &["-t", "nat", "-N", "KIND-MASQ-AGENT"]);
    iptables(
        &node,
        &["-t", "nat", "-A", "POSTROUTING", "-j", "KIND-MASQ-AGENT"],
    );
    iptables(
        &node,
        &[
            "-t",
            "nat",
            "-A",
            "KIND-MASQ-AGENT",
            "-d",
            "10.244.0.0/16",
            "-j",
            "RETURN",
        ],
    );
    iptables(
        &node,
        &["-t", "nat", "-A", "KIND-MASQ-AGENT", "-j", "MASQUERADE"],
    );

    let client_before = main_routes(&client);
    assert!(
        tcp_pong(&client, server.addr(), Duration::from_secs(1)).is_err(),
        "the client's own default path must be a dead end"
    );
    let gw = json!({"router": ROUTER, "keep": [KEEP]});

    // Without the exemption, the masquerade agent rewrites bridged traffic
    // from client to router: the router does not see the client.
    let mut no_exemption = gw.clone();
    no_exemption["masqueradeExemption"] = json!(false);
    let plain = conflist(
        &lab,
        "node",
        ("192.168.50.2", "192.168.50.254"),
        true,
        no_exemption,
    );
    let r = add_router(&node, &plain, "rtr0", &router);
    let c = add(&node, &plain, "cli0", &client, client_args("cli0"));
    let on_router = TcpServer::start(&router, sock(ROUTER, 8081));
    let client_ip = c.ip();
    let masked = tcp_pong(&client, on_router.addr(), Duration::from_secs(2))
        .expect("client to router without the exemption");
    assert_eq!(
        (masked.peer, masked.peer == client_ip),
        ("192.168.50.1".parse::<IpAddr>().unwrap(), false),
        "without the exemption the router sees the bridge's address"
    );
    c.del();
    r.del();
    assert_eq!(main_routes(&client), client_before);

    // With gwsteer's defaults (exemption on).
    let conf = conflist(&lab, "node", ("192.168.50.2", "192.168.50.254"), true, gw);
    let r = add_router(&node, &conf, "rtr1", &router);
    let c = add(&node, &conf, "cli1", &client, client_args("cli1"));
    let client_ip = c.ip();
    let seen =
        tcp_pong(&client, on_router.addr(), Duration::from_secs(3)).expect("client to router");
    assert_eq!(
        seen.peer, client_ip,
        "the router sees the client's own address"
    );
    let pong = tcp_pong(&client, server.addr(), Duration::from_secs(3))
        .expect("client to the outside through the router");
    assert_eq!(
        pong.peer,
        ROUTER_ETH0.parse::<IpAddr>().unwrap(),
        "the router pod masquerades"
    );

    // What the client has: its default via the router on net1, the kept
    // CIDR on its previous path; the router forwards and masquerades.
    let routes = main_routes(&client);
    let default: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "default").collect();
    assert_eq!(default.len(), 1, "{routes:?}");
    assert_eq!(default[0]["gateway"], ROUTER);
    assert_eq!(default[0]["dev"], "net1");
    let keep: Vec<&Value> = routes.iter().filter(|r| r["dst"] == KEEP).collect();
    assert_eq!(keep.len(), 1, "{routes:?}");
    assert_eq!(
        (keep[0]["gateway"].as_str(), keep[0]["dev"].as_str()),
        (Some(DEAD_END), Some("eth0"))
    );
    assert_eq!(lab.read_sysctl(&router, "net.ipv4.ip_forward"), "1");
    assert!(nft_tables(&router).contains(&"gwsteer-router-net1".to_string()));
    c.check().unwrap_or_else(|o| panic!("CHECK client: {o}"));
    r.check().unwrap_or_else(|o| panic!("CHECK router: {o}"));

    // DEL puts the pods back exactly.
    c.del();
    r.del();
    assert_eq!(
        main_routes(&client),
        client_before,
        "client routes after DEL"
    );
    assert!(tcp_pong(&client, server.addr(), Duration::from_secs(1)).is_err());
    assert_eq!(lab.read_sysctl(&router, "net.ipv4.ip_forward"), "0");
    assert!(!nft_tables(&router).iter().any(|t| t.starts_with("gwsteer")));

    let state = lab.tmpdir().join("state-node");
    cleanup(&node, &state);
    assert_nothing_left(&node, &state);
    // The bridge is the bridge plugin's: it stays, gwsteer never marked it.
    assert_ne!(link(&node, "gwbr0")["ifalias"], "gwsteer");
}

/// A TCP sink in `ns`: counts the bytes of one connection, answers the count.
fn sink(ns: &str, addr: SocketAddr) -> std::thread::JoinHandle<std::io::Result<u64>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = spawn_in_netns(ns, move || {
        let listener = TcpListener::bind(addr)?;
        let _ = tx.send(());
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut buf = vec![0u8; 65536];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        s.write_all(total.to_string().as_bytes())?;
        Ok(total)
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("sink started");
    handle
}

fn send_megabyte(ns: &str, addr: SocketAddr) -> Result<u64, String> {
    in_netns(ns, move || {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let data = vec![0x5au8; 1 << 20];
        s.write_all(&data).map_err(|e| format!("write: {e}"))?;
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        answer
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("{answer:?}: {e}"))
    })
}

/// Two nodes on an underlay segment (a third namespace is the switch),
/// the client on one, the router on the other, joined by gwsteer's VXLAN.
fn multi_node(tag: &str, vxlan: Value, unicast: bool) {
    let lab = Lab::new(tag);
    let nodes = underlay(&lab, ["10.200.0.1/24", "10.200.0.2/24"], "10.200.0.254");
    let (nodea, nodeb) = (&nodes[0], &nodes[1]);
    let client = dead_end_pod(&lab, "client");
    let (router, outside) = router_pod(&lab);
    let server = TcpServer::start(&outside, sock(OUTSIDE, 8080));
    let client_before = main_routes(&client);
    let gw = json!({"router": ROUTER, "vxlan": vxlan});
    let conf_a = conflist(
        &lab,
        "nodea",
        ("192.168.50.10", "192.168.50.99"),
        false,
        gw.clone(),
    );
    let conf_b = conflist(
        &lab,
        "nodeb",
        ("192.168.50.100", "192.168.50.254"),
        false,
        gw,
    );
    let r = add_router(nodeb, &conf_b, "rtr", &router);
    let c = add(nodea, &conf_a, "cli", &client, client_args("cli"));

    // Infrastructure on each node: bridge and VXLAN at underlay − 50.
    for node in &nodes {
        let vx = link(node, "gwvx0");
        assert_eq!(vx["mtu"], 1450, "{node}: {vx}");
        assert_eq!(vx["master"], "gwbr0", "{node}");
        assert_eq!(vx["ifalias"], "gwsteer", "{node}");
        assert_eq!(vx["linkinfo"]["info_kind"], "vxlan");
        assert!(
            vx["flags"].as_array().unwrap().contains(&json!("UP")),
            "{vx}"
        );
        assert_eq!(mtu(node, "gwbr0"), 1450, "{node}");
        if unicast {
            let fdb = flood_list(node);
            let other = if node == nodea {
                "10.200.0.2"
            } else {
                "10.200.0.1"
            };
            assert_eq!(fdb, vec![other.to_string()], "{node}: own address skipped");
        }
    }
    assert_eq!(mtu(&client, "net1"), 1450);
    assert_eq!(mtu(&router, "net1"), 1450);

    wait_for(
        "client reaches the router over the VXLAN",
        Duration::from_secs(10),
        || ping(&client, ROUTER, None, false),
    );
    // The path MTU exactly: 1450 − 28 passes, one byte more does not.
    assert!(
        ping(&client, ROUTER, Some(1422), true),
        "DF ping of the path MTU"
    );
    assert!(
        !ping(&client, ROUTER, Some(1423), true),
        "DF ping one byte over"
    );
    // What gwsteer's MTU prevents: a pod left at 1500 sends 1500-byte
    // frames that vanish at the VXLAN (and CHECK names the drift).
    let host_veth = c.result["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ip(&client, ["link", "set", "net1", "mtu", "1500"]);
    lab.ip(nodea, ["link", "set", &host_veth, "mtu", "1500"]);
    let drift = c.check().expect_err("CHECK sees the MTU drift");
    assert!(
        drift
            .error_msg()
            .unwrap_or("")
            .contains("link net1 mtu 1450"),
        "{drift}"
    );
    assert!(
        !ping(&client, ROUTER, Some(1472), true),
        "a 1500-byte frame must not cross the VXLAN"
    );
    lab.ip(&client, ["link", "set", "net1", "mtu", "1450"]);
    lab.ip(nodea, ["link", "set", &host_veth, "mtu", "1450"]);
    c.check().unwrap_or_else(|o| panic!("CHECK client: {o}"));
    r.check().unwrap_or_else(|o| panic!("CHECK router: {o}"));

    // A 1 MB transfer from client to router across nodes.
    let done = sink(&router, sock(ROUTER, 9000));
    assert_eq!(send_megabyte(&client, sock(ROUTER, 9000)), Ok(1 << 20));
    assert_eq!(done.join().unwrap().unwrap(), 1 << 20);

    // The client's connections leave by the router pod on the other node.
    let pong =
        tcp_pong(&client, server.addr(), Duration::from_secs(3)).expect("client to the outside");
    assert_eq!(pong.peer, ROUTER_ETH0.parse::<IpAddr>().unwrap());

    c.del();
    r.del();
    assert_eq!(
        main_routes(&client),
        client_before,
        "client routes after DEL"
    );
    // Infrastructure stays until cleanup.
    assert_eq!(link(nodea, "gwvx0")["ifalias"], "gwsteer");
    for (node, name) in [(nodea, "nodea"), (nodeb, "nodeb")] {
        let state = lab.tmpdir().join(format!("state-{name}"));
        cleanup(node, &state);
        assert_nothing_left(node, &state);
    }
}

#[test]
fn two_nodes_with_unicast_remotes() {
    multi_node(
        "gwuni",
        json!({"vni": 4242, "remotes": ["10.200.0.1", "10.200.0.2"]}),
        true,
    );
}

#[test]
fn two_nodes_with_a_multicast_group() {
    multi_node(
        "gwmulti",
        json!({"vni": 4243, "group": "239.1.1.42"}),
        false,
    );
}

/// Many pods at once on a node whose primary (`ptp`) makes no bridge:
/// gwsteer makes and marks the bridge and the VXLAN exactly once, every pod
/// gets the VXLAN's MTU on both veth ends; the infrastructure outlives the
/// pods and `gwsteer cleanup` removes it.
#[test]
fn concurrent_adds_make_the_infrastructure_once() {
    const PODS: usize = 6;
    let lab = Lab::new("gwconc");
    let node = lab.netns("node");
    let peer = lab.netns("peer");
    lab.veth(&node, "under0", &peer, "under0");
    lab.addr(&node, "under0", "10.200.0.1/24");
    lab.route(&node, &["add", "default", "via", "10.200.0.254"]);
    let state = lab.subdir("state");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {"type": "ptp", "ipMasq": false, "ipam": {
                "type": "host-local", "ranges": [[{"subnet": SUBNET}]], "dataDir": lab.subdir("ipam")}},
            gwsteer_plugin(&state, json!({"gatewayNetwork": {
                "role": "none",
                "vxlan": {"vni": 77, "remotes": ["10.200.0.1", "10.200.0.2"]},
            }})),
        ],
    });
    let pods: Vec<String> = (0..PODS).map(|i| lab.netns(&format!("pod{i}"))).collect();
    // An MTU the underlay cannot carry (1500 − 50 < 1480) is a config error.
    let mut too_big = conf.clone();
    too_big["plugins"][1]["gatewayNetwork"]["mtu"] = json!(1480);
    let refused = conflist_add(&node, &too_big, "big", &netns_path(&pods[0]), "net1", None)
        .expect_err("an impossible MTU is refused");
    assert_eq!(refused.error_code(), Some(7), "{refused}");
    assert!(
        refused
            .error_msg()
            .unwrap_or("")
            .starts_with("gatewayNetwork.mtu: 1480 is impossible over underlay under0"),
        "{refused}"
    );
    conflist_del(
        &node,
        &too_big,
        "big",
        Some(&netns_path(&pods[0])),
        "net1",
        None,
        None,
    )
    .unwrap_or_else(|o| panic!("DEL big: {o}"));
    let results: Vec<(String, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    let id = format!("c{i}");
                    let args = client_args(&id);
                    let r = conflist_add(node, conf, &id, &netns_path(pod), "net1", Some(&args))
                        .unwrap_or_else(|o| panic!("ADD {id}: {o}"));
                    (id, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let br = link(&node, "gwbr0");
    assert_eq!(
        (br["ifalias"].as_str(), br["mtu"].as_u64()),
        (Some("gwsteer"), Some(1450)),
        "{br}"
    );
    let vx = link(&node, "gwvx0");
    assert_eq!(vx["master"], "gwbr0");
    assert_eq!(vx["linkinfo"]["info_data"]["id"], 77);
    assert_eq!(marked_links(&node).len(), 2, "one bridge, one VXLAN");
    for (pod, (_, result)) in pods.iter().zip(&results) {
        assert_eq!(mtu(pod, "net1"), 1450, "{pod}");
        let host = result["interfaces"][0]["name"].as_str().unwrap();
        assert_eq!(mtu(&node, host), 1450, "host end {host}");
    }
    std::thread::scope(|s| {
        for (pod, (id, result)) in pods.iter().zip(&results) {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                conflist_del(
                    node,
                    conf,
                    id,
                    Some(&netns_path(pod)),
                    "net1",
                    Some(&client_args(id)),
                    Some(result),
                )
                .unwrap_or_else(|o| panic!("DEL {id}: {o}"));
            });
        }
    });
    assert_eq!(
        marked_links(&node).len(),
        2,
        "infrastructure stays until cleanup"
    );
    // Kept right meanwhile: reconcile re-makes a VXLAN deleted by hand.
    lab.ip(&node, ["link", "del", "gwvx0"]);
    let reconcile_once = || {
        gwsteer_cli(
            &node,
            &[
                "reconcile",
                "--once",
                "--state-dir",
                state.to_str().unwrap(),
            ],
        )
    };
    let fixed = reconcile_once();
    assert!(
        !fixed.success(),
        "reconcile --once reports that it repaired something: {fixed}"
    );
    assert_eq!(link(&node, "gwvx0")["master"], "gwbr0", "{fixed}");
    let clean = reconcile_once();
    assert!(clean.success(), "{clean}");
    // Even with the state store lost, cleanup finds gwsteer's links by their mark.
    std::fs::remove_dir_all(state.join(NET)).unwrap();
    cleanup(&node, &state);
    assert_nothing_left(&node, &state);
    assert!(
        try_ip(&node, ["link", "show", "dev", "gwbr0"]).is_err(),
        "gwsteer's bridge goes with cleanup"
    );
}
