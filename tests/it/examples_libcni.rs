//! Every example in conflist-examples/ run by Debian's libcni (the library
//! containerd, CRI-O and podman use; up to cniVersion 1.0.0) in network
//! namespaces: ADD, CHECK (from 0.4.0 on; libcni refuses it at 0.3.1), DEL,
//! and nothing of gwsteer's left after DEL.
//!
//! Each example gets a small node built with the interfaces, addresses and
//! gateways it names (eth1 facing its router, eth0 with the default route),
//! so the files run as they are. The one test-only rewrite
//! (`support::examples::for_test`): gwsteer's `stateDir` and `logFile` and
//! host-local's `dataDir` point into the test's temp dir, never at the
//! node's /run, /var/log or /var/lib.
//! The Multus NetworkAttachmentDefinition's embedded config is extracted from
//! its `config: |` block and run the same way, the router pod with the
//! `args.cni.gwsteer.role` Multus makes of its cni-args and host-local's `IP`
//! argument standing in for Multus' `ips`.
//!
//! The VRF example (80-) needs a kernel with VRF, which this machine's
//! lacks: `tests/vrf_guest.rs` runs it through libcni in the qemu guest
//! (traffic, CHECK, DEL, cleanup); here it must be refused cleanly (103).

use std::fs;

use crate::support::examples::{
    Run, example_node, examples_dir, load, node_with_eth1, our_rules, pod_ips, walk,
};
use crate::support::*;
use serde_json::{Value, json};

/// The JSON of a NetworkAttachmentDefinition's `spec.config: |` block: the
/// lines indented deeper than `config:` that follow it.
fn nad_config(yaml: &str) -> Value {
    let mut lines = yaml.lines();
    let key = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("config: |"))
        .expect("a `config: |` block");
    let key_indent = key.len() - key.trim_start().len();
    let mut block = String::new();
    for l in lines {
        let indent = l.len() - l.trim_start().len();
        if !l.trim().is_empty() && indent <= key_indent {
            break;
        }
        block.push_str(l);
        block.push('\n');
    }
    serde_json::from_str(&block)
        .unwrap_or_else(|e| panic!("config block is not JSON ({e}):\n{block}"))
}

/// Source steering of namespace `oam` (10- and 40-): the pod's addresses get
/// rules to table 100 while attached, a pod of another namespace none.
fn source_oam(tag: &str, file: &str, eth1: &[&str], router: &[&str]) {
    let lab = Lab::new(tag);
    let node = node_with_eth1(&lab, eth1, router);
    let run = Run::new(&lab, &node, &load(file), file);
    let pod = lab.netns("pod");
    let other = lab.netns("other");
    let args = k8s_cni_args("oam", "web-0", "c1");
    let other_args = k8s_cni_args("default", "web-1", "c2");
    let result = run.add_check(&pod, "c1", "eth0", &args);
    run.add_check(&other, "c2", "eth0", &other_args);
    let ours = our_rules(&node);
    for ip in pod_ips(&result) {
        assert!(
            ours.iter()
                .any(|r| r["src"] == ip.as_str() && r["table"] == "100"),
            "{file}: no rule from {ip} to table 100: {ours:?}"
        );
    }
    assert_eq!(
        ours.iter().filter(|r| r["table"] == "100").count(),
        pod_ips(&result).len(),
        "{file}: only the oam pod is steered: {ours:?}"
    );
    run.del(&pod, "c1", "eth0", &args);
    run.del(&other, "c2", "eth0", &other_args);
    run.assert_clean();
}

#[test]
fn example_10_bridge_source_oam() {
    source_oam(
        "ex10",
        "10-bridge-source-oam.conflist",
        &["192.168.2.2/24", "fd00:2::2/64"],
        &["192.168.2.1/24", "fd00:2::1/64"],
    );
}

#[test]
fn example_40_kindnet_ptp_second_nic() {
    source_oam(
        "ex40",
        "40-kindnet-ptp-second-nic.conflist",
        &["172.19.0.2/16"],
        &["172.19.0.1/16"],
    );
}

#[test]
fn example_20_ptp_source_multipath() {
    let lab = Lab::new("ex20");
    let node = node_with_eth1(
        &lab,
        &["172.28.4.129/25"],
        &["172.28.4.130/25", "172.28.4.131/25"],
    );
    let file = "20-ptp-source-multipath.conflist";
    let run = Run::new(&lab, &node, &load(file), file);
    let pod = lab.netns("pod");
    let args = k8s_cni_args("default", "lb-0", "c1");
    let result = run.add_check(&pod, "c1", "eth0", &args);
    let table = ip_json(&node, &["route", "show", "table", "1000020"]);
    assert_eq!(
        table[0]["nexthops"].as_array().map(|h| h.len()),
        Some(2),
        "one multipath route over both peers: {table}"
    );
    // explain shows the multipath route and its weights (100 each), for a
    // reply arriving from the pod on ptp's host-side veth.
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
    let pod_ip = &pod_ips(&result)[0];
    let out = gwsteer_cli(
        &node,
        &[
            "explain",
            "198.51.100.7",
            "--from",
            pod_ip,
            "--iif",
            host_veth,
            "--json",
        ],
    );
    let v: Value =
        serde_json::from_str(out.stdout_raw.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["table"], 1000020, "{v}");
    assert_eq!(v["rule"]["priority"], 20, "{v}");
    assert_eq!(v["rule"]["gwsteer"], true, "{v}");
    assert_eq!(
        v["route"]["nexthops"],
        json!([
            {"via": "172.28.4.130", "dev": "eth1", "weight": 100},
            {"via": "172.28.4.131", "dev": "eth1", "weight": 100},
        ]),
        "{v}"
    );
    run.del(&pod, "c1", "eth0", &args);
    run.assert_clean();
}

/// A node-level rule `fwmark <mark> lookup <table>` of gwsteer's.
fn assert_fwmark_rule(node: &str, mark: &str, table: &str) {
    let ours = our_rules(node);
    assert!(
        ours.iter()
            .any(|r| r["fwmark"] == mark && r["table"] == table),
        "no gwsteer rule fwmark {mark} lookup {table}: {ours:?}"
    );
}

#[test]
fn example_50_flannel_bridge_egress_mark() {
    let lab = Lab::new("ex50");
    let node = node_with_eth1(&lab, &["192.168.3.2/24"], &["192.168.3.1/24"]);
    let file = "50-flannel-bridge-egress-mark.conflist";
    let run = Run::new(&lab, &node, &load(file), file);
    let pod = lab.netns("pod");
    let args = k8s_cni_args("default", "app-0", "c1");
    run.add_check(&pod, "c1", "eth0", &args);
    assert_fwmark_rule(&node, "0x1e", "120");
    run.del(&pod, "c1", "eth0", &args);
    run.assert_clean();
}

#[test]
fn example_60_bridge_connmark_oam_return() {
    let lab = Lab::new("ex60");
    let node = node_with_eth1(
        &lab,
        &["192.168.2.2/24", "fd00:2::2/64"],
        &["192.168.2.1/24", "fd00:2::1/64"],
    );
    // connmark needs loose reverse-path filtering on the ingress interface.
    lab.sysctl(&node, "net.ipv4.conf.eth1.rp_filter", "2");
    let file = "60-bridge-connmark-oam-return.conflist";
    let run = Run::new(&lab, &node, &load(file), file);
    let pod = lab.netns("pod");
    let args = k8s_cni_args("default", "oam-0", "c1");
    let result = run.add_check(&pod, "c1", "eth0", &args);
    assert_fwmark_rule(&node, "0x14", "110");
    // explain with the connection's mark: gwsteer's fwmark rule, table 110,
    // router on eth1; without it, the main table.
    let pod_ip = &pod_ips(&result)[0];
    let explain = |mark: Option<&str>| -> Value {
        let mut a = vec![
            "explain", "10.2.0.2", "--from", pod_ip, "--iif", "cni0", "--json",
        ];
        if let Some(m) = mark {
            a.extend(["--mark", m]);
        }
        let out = gwsteer_cli(&node, &a);
        serde_json::from_str(out.stdout_raw.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let v = explain(Some("0x14"));
    assert_eq!(v["rule"]["gwsteer"], true, "{v}");
    assert_eq!(v["rule"]["selectors"]["fwmark"], "0x14", "{v}");
    assert_eq!(v["table"], 110, "{v}");
    assert_eq!(v["chosen"]["via"], "192.168.2.1", "{v}");
    assert_eq!(v["chosen"]["dev"], "eth1", "{v}");
    let v = explain(None);
    assert_eq!(v["tableName"], "main", "{v}");
    assert_eq!(v["chosen"]["dev"], "eth0", "{v}");
    run.del(&pod, "c1", "eth0", &args);
    run.assert_clean();
}

/// A pod with its primary network (eth0, default route) already there, as
/// a Multus secondary attachment finds it.
fn pod_with_eth0(lab: &Lab, name: &str, addr: &str) -> String {
    let pod = lab.netns(name);
    let far = lab.netns(&format!("{name}-up"));
    lab.veth(&pod, "eth0", &far, "eth0");
    lab.addr(&pod, "eth0", &format!("{addr}/24"));
    let gw = format!("{}.1", addr.rsplit_once('.').unwrap().0);
    lab.addr(&far, "eth0", &format!("{gw}/24"));
    lab.route(&pod, &["add", "default", "via", &gw]);
    pod
}

/// The gateway network (30- and the Multus NAD): a client and a router pod
/// on `gwbr0` with its VXLAN; the client's default goes via the router.
fn gateway_network(tag: &str, conf: Value, file_name: &str) {
    let lab = Lab::new(tag);
    // The node's underlay address is one of the example's remotes.
    let node = node_with_eth1(&lab, &["192.168.2.2/24"], &["192.168.2.1/24"]);
    let mut router_conf = conf.clone();
    for p in router_conf["plugins"].as_array_mut().unwrap() {
        // What Multus makes of the pod's cni-args.
        p["args"] = json!({"cni": {"gwsteer": {"role": "router"}}});
    }
    let run = Run::new(&lab, &node, &conf, file_name);
    let router_run = Run::new(&lab, &node, &router_conf, &format!("router-{file_name}"));
    let client = pod_with_eth0(&lab, "client", "10.98.0.2");
    let router = pod_with_eth0(&lab, "router", "10.99.0.2");
    let client_args = k8s_cni_args("default", "client", "c1");
    let router_args = format!(
        "{};IP=192.168.50.254",
        k8s_cni_args("default", "router", "r1")
    );
    let r = router_run.add_check(&router, "r1", "net1", &router_args);
    assert_eq!(pod_ips(&r), vec!["192.168.50.254"], "{r}");
    run.add_check(&client, "c1", "net1", &client_args);
    assert!(
        try_ip(&node, ["link", "show", "gwvx0"]).is_ok(),
        "{file_name}: the VXLAN gwvx0"
    );
    let routes = ip_json(&client, &["route", "show", "default"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["gateway"] == "192.168.50.254" && r["dev"] == "net1"),
        "{file_name}: the client's default via the router: {routes}"
    );
    run.del(&client, "c1", "net1", &client_args);
    router_run.del(&router, "r1", "net1", &router_args);
    run.assert_clean();
    let back = ip_json(&client, &["route", "show", "default"]);
    assert_eq!(back[0]["gateway"], "10.98.0.1", "{back}");
}

#[test]
fn example_30_bridge_gateway_network() {
    let file = "30-bridge-gateway-network.conflist";
    gateway_network("ex30", load(file), file);
}

#[test]
fn example_70_multus_nad_gateway_network() {
    let file = "70-multus-gateway-network-nad.yaml";
    let yaml = fs::read_to_string(examples_dir().join(file)).unwrap();
    assert!(yaml.contains("kind: NetworkAttachmentDefinition"));
    let conf = nad_config(&yaml);
    // The embedded config's gwsteer entry validates as a runtime builds it.
    let mut ours = conf["plugins"][1].clone();
    ours["cniVersion"] = conf["cniVersion"].clone();
    ours["name"] = conf["name"].clone();
    gwsteer::config::Config::from_value(&ours).unwrap_or_else(|e| panic!("{file}: {e}"));
    gateway_network("ex70", conf, "70-nad.conflist");
}

/// The Multus NAD for a macvlan `net1` steered inside the pod: a pod with
/// the primary's `eth0` (default route) and the NAD's `net1`; a client
/// behind the LAN router is answered by net1's address and by a VIP on
/// the pod's `lo`; gwsteer's rules and tables are in the pod, none on the
/// node; DEL leaves nothing.
#[test]
fn example_90_multus_nad_macvlan_pod_side() {
    let file = "90-multus-macvlan-pod-side-nad.yaml";
    let yaml = fs::read_to_string(examples_dir().join(file)).unwrap();
    assert!(yaml.contains("kind: NetworkAttachmentDefinition"));
    let conf = nad_config(&yaml);
    let lab = Lab::new("ex90");
    let (node, rtr) = example_node(
        &lab,
        &["192.168.60.2/24"],
        &["192.168.60.1/24", "fd00:60::1/64"],
    );
    lab.sysctls(
        &rtr,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    );
    lab.sysctl(&node, "net.ipv4.conf.all.rp_filter", "1");
    let cli = lab.netns("cli");
    wire(
        &lab,
        (&rtr, "up0", &["10.9.0.1/24", "fd00:9::1/64"]),
        (&cli, "eth0", &["10.9.0.2/24", "fd00:9::2/64"]),
    );
    lab.route(&cli, &["add", "default", "via", "10.9.0.1"]);
    lab.route(&cli, &["add", "default", "via", "fd00:9::1"]);
    let pod = lab.netns("pod");
    // The primary: a veth with the pod's default route (what the cluster's
    // CNI gives every pod).
    wire(
        &lab,
        (&pod, "eth0", &["10.244.1.5/24"]),
        (&node, "vethpod", &["10.244.1.1/24"]),
    );
    lab.route(&pod, &["add", "default", "via", "10.244.1.1"]);
    ip(&pod, ["addr", "add", "203.0.113.7/32", "dev", "lo"]);
    let run = Run::new(&lab, &node, &conf, "90-nad.conflist");
    let args = k8s_cni_args("default", "web-0", "c1");
    let result = run.add_check(&pod, "c1", "net1", &args);
    let ips = pod_ips(&result);
    let v4 = ips.iter().find(|i| !i.contains(':')).unwrap().clone();
    ip(&rtr, ["route", "add", "203.0.113.7/32", "via", &v4]);
    wait_no_tentative(&pod, std::time::Duration::from_secs(5));
    let server = TcpServer::start(&pod, "[::]:0".parse().unwrap());
    let port = server.addr().port();
    for addr in ips.iter().map(String::as_str).chain(["203.0.113.7"]) {
        let to = std::net::SocketAddr::new(addr.parse().unwrap(), port);
        tcp_request(&cli, to, std::time::Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("{file}: {addr} not answered: {e}"));
    }
    assert!(our_rules(&node).is_empty(), "{:?}", our_rules(&node));
    let in_pod = our_rules(&pod);
    for ip in &ips {
        assert!(
            in_pod.iter().any(|r| r["src"] == ip.as_str()),
            "{file}: {in_pod:?}"
        );
    }
    run.del(&pod, "c1", "net1", &args);
    assert!(our_rules(&pod).is_empty(), "{:?}", our_rules(&pod));
    run.assert_clean();
}

/// The VRF egress example and the test of `tests/vrf_guest.rs` that runs it
/// through libcni in the qemu guest (`bash tests/vrf/run.sh`).
const VRF_EXAMPLE: &str = "80-bridge-vrf-egress.conflist";
const VRF_EXAMPLE_GUEST_TEST: &str = "example_80_bridge_vrf_egress_through_libcni";

/// gwsteer's routes (protocol 211) in any table, both families.
fn our_routes(ns: &str) -> Vec<Value> {
    [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| {
            ip_json(ns, &["-N", f.flag(), "route", "show", "table", "all"])
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|r| r["protocol"] == "211")
        .collect()
}

/// 80-, on this machine: libcni runs the example as it is. On a kernel
/// without VRF (this machine's) the bridge attaches the pod and gwsteer
/// refuses with 103 naming `CONFIG_NET_VRF`, having made nothing: no VRF,
/// no legs, `eth1` untouched, no rule, route, nftables table or record;
/// libcni's DEL then succeeds. On a kernel with VRF, ADD, CHECK and DEL
/// succeed and `gwsteer cleanup` leaves nothing. What the example does
/// (traffic through the VRF, masqueraded, and gone after DEL) is proven in
/// the guest by `tests/vrf_guest.rs` ([`VRF_EXAMPLE_GUEST_TEST`]).
#[test]
fn example_80_bridge_vrf_egress() {
    let lab = Lab::new("ex80");
    let node = node_with_eth1(
        &lab,
        &["192.168.2.2/24", "fd00:2::2/64"],
        &["192.168.2.1/24", "fd00:2::1/64"],
    );
    let conf = load(VRF_EXAMPLE);
    let vrf = conf["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "gwsteer")
        .expect("a gwsteer entry")["vrf"]
        .clone();
    let made: Vec<String> = [
        &vrf["name"],
        &vrf["legs"]["host"]["name"],
        &vrf["legs"]["vrf"]["name"],
    ]
    .iter()
    .map(|n| n.as_str().expect("a VRF or leg name").to_string())
    .collect();
    assert_eq!(vrf["uplinks"], json!(["eth1"]), "{vrf}");
    let run = Run::new(&lab, &node, &conf, VRF_EXAMPLE);
    let pod = lab.netns("pod");
    let args = k8s_cni_args("oam", "egress-0", "c1");
    let eth1_before = addrs(&node, "eth1");
    let assert_nothing_of_ours = |when: &str| {
        let links = link_names(&node);
        for name in &made {
            assert!(!links.contains(name), "{when}: {name} exists: {links:?}");
        }
        let eth1 = ip_json(&node, &["link", "show", "dev", "eth1"]);
        assert!(eth1[0].get("master").is_none(), "{when}: {eth1}");
        assert_eq!(
            addrs(&node, "eth1"),
            eth1_before,
            "{when}: eth1's addresses"
        );
        assert_eq!(our_rules(&node), Vec::<Value>::new(), "{when}: rules");
        assert_eq!(our_routes(&node), Vec::<Value>::new(), "{when}: routes");
        let tables = exec_in(&node, "nft", ["list", "tables"]);
        assert!(!tables.contains("gwsteer"), "{when}: {tables}");
        let records: Vec<String> = walk(&run.state_dir())
            .into_iter()
            .filter(|p| p.ends_with(".json") || p.contains("/holds/"))
            .collect();
        assert!(records.is_empty(), "{when}: state left: {records:?}");
    };

    if lab.kernel_makes_vrf() {
        eprintln!("example_80_bridge_vrf_egress: this kernel has VRF: ADD must succeed");
        run.add_check(&pod, "c1", "eth0", &args);
        let eth1 = ip_json(&node, &["link", "show", "dev", "eth1"]);
        assert_eq!(eth1[0]["master"], vrf["name"], "{eth1}");
        run.del(&pod, "c1", "eth0", &args);
        let state = run.state_dir().display().to_string();
        let out = gwsteer_cli(&node, &["cleanup", "--state-dir", &state]);
        assert!(out.success(), "cleanup:\n{out}");
    } else {
        let add = run.op("add", &pod, "c1", "eth0", &args);
        assert_eq!(
            add.expect_error("libcni ADD of the VRF example"),
            103,
            "{add}"
        );
        assert!(
            add.error_msg()
                .unwrap_or_default()
                .contains("CONFIG_NET_VRF"),
            "{add}"
        );
        assert_nothing_of_ours("after the refused ADD");
        run.del(&pod, "c1", "eth0", &args);
    }
    run.assert_clean();
    assert_nothing_of_ours("after DEL");
}

/// Every example has its test above (a new example needs one), and every
/// conflist's version is one libcni 1.1.2 runs. The VRF example's test here
/// only proves the refusal on this kernel: its guest test must exist, be
/// gated like the other guest tests and run this very file.
#[test]
fn every_example_is_run_by_libcni() {
    let covered = [
        "10-bridge-source-oam.conflist",
        "20-ptp-source-multipath.conflist",
        "30-bridge-gateway-network.conflist",
        "40-kindnet-ptp-second-nic.conflist",
        "50-flannel-bridge-egress-mark.conflist",
        "60-bridge-connmark-oam-return.conflist",
        "70-multus-gateway-network-nad.yaml",
        VRF_EXAMPLE,
        "90-multus-macvlan-pod-side-nad.yaml",
    ];
    let guest = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vrf_guest.rs"),
    )
    .expect("tests/vrf_guest.rs");
    let header = format!("#[test]\nfn {VRF_EXAMPLE_GUEST_TEST}() {{\n");
    let start = guest.find(&header).unwrap_or_else(|| {
        panic!("tests/vrf_guest.rs has no test `{VRF_EXAMPLE_GUEST_TEST}` for {VRF_EXAMPLE}")
    });
    let body = &guest[start..];
    let body = &body[..body.find("\n}\n").expect("the guest test's end")];
    for needle in [
        format!("if !in_vrf_guest(\"{VRF_EXAMPLE_GUEST_TEST}\") {{"),
        format!("\"{VRF_EXAMPLE}\""),
        "Run::new(".to_string(),
    ] {
        assert!(
            body.contains(&needle),
            "{VRF_EXAMPLE_GUEST_TEST} in tests/vrf_guest.rs must contain `{needle}`"
        );
    }
    let mut found: Vec<String> = fs::read_dir(examples_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conflist") || n.ends_with(".yaml"))
        .collect();
    found.sort();
    assert_eq!(found, covered, "every example needs a test here");
    for f in covered.iter().filter(|f| f.ends_with(".conflist")) {
        let v = load(f);
        assert!(
            ["0.3.0", "0.3.1", "0.4.0", "1.0.0"].contains(&v["cniVersion"].as_str().unwrap()),
            "{f}: cniVersion beyond libcni 1.1.2"
        );
    }
}
