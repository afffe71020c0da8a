//! Multi-homed pods (Multus): a pod with `eth0` from Debian's bridge (the
//! primary) and `net1` from Debian's macvlan, run as a NAD-style second
//! conflist through libcni with `CNI_IFNAME=net1`, as Multus does. A client
//! behind its own router reaches the pod at its `net1` address; the node
//! has strict `rp_filter` and a default route to a router that does not know
//! the client:
//!
//! ```text
//!   client ── rtr (lan0 192.168.60.1/24, fd00:60::1/64) ── ext0 [node] eth1 ── up (no route back)
//!                                                          │ macvlan parent
//!   pod: net1 (macvlan on ext0, 192.168.60.1x)   eth0 (bridge cni, 10.22.0.x, default route)
//! ```
//!
//! Without steering the pod's reply leaves by `eth0` and is lost; gwsteer on
//! the pod side sends it out of `net1`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(3);
const CLIENT4: &str = "10.9.0.2";
const CLIENT6: &str = "fd00:9::2";

struct Topo {
    lab: Lab,
    node: String,
    rtr: String,
    cli: String,
    pod: String,
    cache: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl Topo {
    fn build(tag: &str) -> Topo {
        let lab = Lab::new(tag);
        let node = lab.router("node");
        let up = lab.router("up");
        let rtr = lab.router("rtr");
        let cli = lab.netns("cli");
        let pod = lab.netns("pod");
        wire(
            &lab,
            (&node, "eth1", &["192.0.2.1/24", "fd00:192::1/64"]),
            (&up, "eth0", &["192.0.2.2/24", "fd00:192::2/64"]),
        );
        lab.route(&node, &["add", "default", "via", "192.0.2.2"]);
        lab.route(&node, &["add", "default", "via", "fd00:192::2"]);
        // The node sits on the macvlan's network too (ext0 is the parent).
        wire(
            &lab,
            (&node, "ext0", &["192.168.60.2/24", "fd00:60::2/64"]),
            (
                &rtr,
                "lan0",
                &[
                    "192.168.60.1/24",
                    "fd00:60::1/64",
                    "192.168.61.1/24",
                    "fd00:61::1/64",
                ],
            ),
        );
        wire(
            &lab,
            (&rtr, "up0", &["10.9.0.1/24", "fd00:9::1/64"]),
            (
                &cli,
                "eth0",
                &[&format!("{CLIENT4}/24"), &format!("{CLIENT6}/64")],
            ),
        );
        lab.route(&cli, &["add", "default", "via", "10.9.0.1"]);
        lab.route(&cli, &["add", "default", "via", "fd00:9::1"]);
        // RHEL's and OpenShift's default.
        lab.sysctl(&node, "net.ipv4.conf.all.rp_filter", "1");
        let cache = lab.subdir("cni-cache");
        let state = lab.subdir("state");
        let log = lab.tmpdir().join("gwsteer.log");
        let t = Topo {
            lab,
            node,
            rtr,
            cli,
            pod,
            cache,
            state,
            log,
        };
        // The pod's primary: bridge + host-local on eth0.
        let primary = bridge_conflist(
            "pods",
            "1.0.0",
            "cni0",
            &["10.22.0.0/24", "fd00:22::/64"],
            &t.lab.subdir("ipam-pods"),
            Value::Null,
        );
        t.run(&primary, "add", "eth0").expect_ok("primary ADD");
        t
    }

    fn write(&self, name: &str, conf: &Value) -> PathBuf {
        let path = self.lab.tmpdir().join(format!("{name}.conflist"));
        write_json(&path, conf);
        path
    }

    /// libcni `op` of `conf` for the pod (container `ctr1`) on `ifname`.
    fn run(&self, conf: &Value, op: &str, ifname: &str) -> CniOutcome {
        let name = conf["name"].as_str().unwrap().to_string();
        let path = self.write(&format!("{name}-{ifname}"), conf);
        libcni(
            &self.node,
            op,
            &path,
            &netns_path(&self.pod),
            "ctr1",
            ifname,
            Some(&k8s_cni_args("default", "web-0", "ctr1")),
            &self.cache,
        )
    }

    /// A NAD: macvlan on `ext0` with host-local on 192.168.6<n>.0/24 and
    /// fd00:6<n>::/64 (gateway .1 / ::1), then `chained` (if not null).
    fn nad(&self, name: &str, n: u8, chained: Value) -> Value {
        let range = |subnet: String, start: String, end: String, gw: String| json!([{"subnet": subnet, "rangeStart": start, "rangeEnd": end, "gateway": gw}]);
        let mut plugins = vec![json!({
            "type": "macvlan", "master": "ext0", "mode": "bridge",
            "ipam": {"type": "host-local", "dataDir": self.lab.subdir(&format!("ipam-{name}")),
                "ranges": [
                    range(format!("192.168.6{n}.0/24"), format!("192.168.6{n}.10"),
                          format!("192.168.6{n}.20"), format!("192.168.6{n}.1")),
                    range(format!("fd00:6{n}::/64"), format!("fd00:6{n}::10"),
                          format!("fd00:6{n}::20"), format!("fd00:6{n}::1")),
                ]},
        })];
        if !chained.is_null() {
            plugins.push(chained);
        }
        json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins})
    }

    /// The gwsteer plugin object with this topology's state dir and log.
    fn gwsteer(&self, steering: Value) -> Value {
        gwsteer_plugin(
            &self.state,
            json!({"logFile": self.log, "logLevel": "debug", "steering": steering}),
        )
    }

    /// Does the client get an answer from `addr` (port of `server`)?
    fn answered(&self, addr: IpAddr, server: &TcpServer) -> bool {
        let to = SocketAddr::new(addr, server.addr().port());
        tcp_request(&self.cli, to, PATIENCE).is_ok()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The pod's addresses on `ifname` in a CNI result.
fn addrs_of(result: &Value) -> (IpAddr, IpAddr) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in result["ips"].as_array().unwrap() {
        let a: ipnet::IpNet = ip["address"].as_str().unwrap().parse().unwrap();
        match a.addr() {
            IpAddr::V4(_) => v4 = Some(a.addr()),
            IpAddr::V6(_) => v6 = Some(a.addr()),
        }
    }
    (v4.unwrap(), v6.unwrap())
}

/// Rules in `ns` that are gwsteer's (protocol 211 / "gwsteer").
fn gw_rules_in(ns: &str) -> Vec<String> {
    gw_rules(ns).into_iter().collect()
}

fn is_gwsteers(r: &Value) -> bool {
    matches!(r["protocol"].as_str(), Some("211" | "gwsteer"))
}

/// Every table id of a gwsteer rule in `ns`.
fn tables_of_rules(ns: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for family in [Family::V4, Family::V6] {
        for r in custom_rules(ns, family) {
            if is_gwsteers(&r) {
                out.insert(r["table"].to_string().trim_matches('"').to_string());
            }
        }
    }
    out
}

/// Routes of protocol gwsteer in any table of `ns`.
fn gw_routes_in(ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        for r in routes(ns, family, "all") {
            if is_gwsteers(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// A counter table of the test's own in the pod: TCP packets from `port`
/// leaving by net1 and by eth0.
fn count_replies(ns: &str, port: u16) {
    let script = format!(
        "table inet probe {{\n counter net1 {{ }}\n counter eth0 {{ }}\n \
         chain post {{ type filter hook postrouting priority 0; \
         oifname \"net1\" tcp sport {port} counter name \"net1\"; \
         oifname \"eth0\" tcp sport {port} counter name \"eth0\"; }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("gwsteer-probe-{ns}.nft"));
    std::fs::write(&path, script).unwrap();
    exec_in(ns, "nft", ["-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
}

fn counted(ns: &str, name: &str) -> u64 {
    let out = exec_in(ns, "nft", ["-j", "list", "counter", "inet", "probe", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o["counter"]["packets"].as_u64())
        .unwrap()
}

/// nftables tables of gwsteer's in `ns`.
fn gw_nft_tables_in(ns: &str) -> Vec<String> {
    let out = exec_in(ns, "nft", ["-j", "list", "tables"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["table"]["name"].as_str())
        .filter(|n| n.starts_with("gwsteer"))
        .map(str::to_string)
        .collect()
}

#[test]
fn macvlan_replies_leave_by_net1_from_inside_the_pod_on_a_strict_rp_filter_node() {
    let t = Topo::build("mhpod");
    // Without gwsteer: the reply leaves by eth0 and never comes back.
    let bare = t.nad("lan", 0, Value::Null);
    let result = t.run(&bare, "add", "net1").expect_ok("macvlan ADD");
    let (v4, v6) = addrs_of(&result);
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    count_replies(&t.pod, server.addr().port());
    assert!(!t.answered(v4, &server), "answered without steering (v4)");
    assert!(!t.answered(v6, &server), "answered without steering (v6)");
    t.run(&bare, "del", "net1").expect_ok("macvlan DEL");

    // With gwsteer after macvlan, side auto: steered inside the pod.
    let policy = json!([{"name": "lan", "table": 200,
        "gateways": [{"via": "192.168.60.1"}, {"via": "fd00:60::1"}],
        "exclude": ["10.96.0.0/12"]}]);
    let nad = t.nad("lan", 0, t.gwsteer(policy));
    let result = t.run(&nad, "add", "net1").expect_ok("NAD ADD");
    let (v4, v6) = addrs_of(&result);
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    let (net1_before, eth0_before) = (counted(&t.pod, "net1"), counted(&t.pod, "eth0"));
    assert!(t.answered(v4, &server), "not answered with gwsteer (v4)");
    assert!(t.answered(v6, &server), "not answered with gwsteer (v6)");
    assert!(
        counted(&t.pod, "net1") > net1_before,
        "no reply left by net1"
    );
    assert_eq!(counted(&t.pod, "eth0"), eth0_before, "a reply left by eth0");
    // The pod holds the steering; the node holds none of it.
    let rules = gw_rules_in(&t.pod);
    assert!(
        rules.iter().any(|r| r.contains(&format!("from {v4}"))),
        "{rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.contains(&format!("from {v6}"))),
        "{rules:?}"
    );
    assert!(
        gw_rules_in(&t.node).is_empty(),
        "{:?}",
        gw_rules_in(&t.node)
    );
    assert!(
        t.log_text()
            .contains("steering lan: on the pod side of net1 (net1 is a macvlan device"),
        "{}",
        t.log_text()
    );
    // show says which side acted.
    let show = gwsteer_cli(&t.node, &["show", "--state-dir", t.state.to_str().unwrap()]);
    let text = &show.stdout_raw;
    assert!(text.contains("pod inet rule 1000: from"), "{text}");
    assert!(text.contains("on the pod side of net1"), "{text}");
    assert!(!text.contains("MISSING"), "{text}");

    // explain on the node names the pod's steering and the way to see it;
    // with --netns it shows the pod's path: gwsteer's rule, out of net1.
    let state = t.state.to_str().unwrap();
    let from = v4.to_string();
    let node_view = gwsteer_cli(
        &t.node,
        &["explain", CLIENT4, "--from", &from, "--state-dir", state],
    );
    assert!(
        node_view.stdout_raw.contains(&format!(
            "{v4} is steered inside its pod by network lan (ctr1/net1)"
        )),
        "{}",
        node_view.stdout_raw
    );
    let pod_path = netns_path(&t.pod);
    assert!(
        node_view
            .stdout_raw
            .contains(&format!("--netns {pod_path}")),
        "{}",
        node_view.stdout_raw
    );
    let pod_view = gwsteer_cli(
        &t.node,
        &[
            "explain", CLIENT4, "--from", &from, "--netns", &pod_path, "--json",
        ],
    );
    let report: Value = serde_json::from_str(&pod_view.stdout_raw).unwrap();
    assert_eq!(report["rule"]["gwsteer"], true, "{report}");
    assert_eq!(report["rule"]["priority"], 1000, "{report}");
    assert_eq!(report["chosen"]["dev"], "net1", "{report}");
    assert_eq!(report["chosen"]["via"], "192.168.60.1", "{report}");

    // CHECK passes, then names a pod-side rule removed by hand; reconcile
    // puts it back.
    t.run(&nad, "check", "net1").expect_ok("CHECK");
    let table = tables_of_rules(&t.pod).into_iter().next().unwrap();
    ip(
        &t.pod,
        ["rule", "del", "from", &v4.to_string(), "lookup", &table],
    );
    let check = t.run(&nad, "check", "net1");
    let msg = check.error_msg().unwrap_or_default().to_string();
    assert!(
        msg.contains(&format!(
            "missing pod inet rule 1000: from {v4} lookup {table}"
        )),
        "{check:?}"
    );

    // DEL: nothing of gwsteer left in the pod or on the node.
    t.run(&nad, "del", "net1").expect_ok("NAD DEL");
    assert!(gw_rules_in(&t.pod).is_empty(), "{:?}", gw_rules_in(&t.pod));
    assert!(
        gw_routes_in(&t.pod).is_empty(),
        "{:?}",
        gw_routes_in(&t.pod)
    );
    assert!(gw_rules_in(&t.node).is_empty());
    assert!(gw_routes_in(&t.node).is_empty());

    // Re-ADD after DEL works (sbr's "file exists").
    let result = t.run(&nad, "add", "net1").expect_ok("NAD re-ADD");
    let (v4, _) = addrs_of(&result);
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    assert!(t.answered(v4, &server), "not answered after re-ADD");
    // DEL once the pod's namespace is gone still succeeds (gwsteer alone:
    // the macvlan went with the namespace).
    let del = CniCall::new(
        "DEL",
        "ctr1",
        "net1",
        json!({"cniVersion": "1.0.0", "name": "lan", "type": "gwsteer",
               "stateDir": t.state, "steering": nad["plugins"][1]["steering"]}),
    );
    drop(server);
    run("ip", ["netns", "del", t.pod.as_str()]);
    invoke(&t.node, &gwsteer_bin(), &del.netns(&netns_path(&t.pod)))
        .expect_ok("DEL with the netns gone");
    let show = gwsteer_cli(&t.node, &["show", "--state-dir", t.state.to_str().unwrap()]);
    assert!(
        !show.stdout_raw.contains("ctr1/net1"),
        "{}",
        show.stdout_raw
    );
}

/// Debian's `sbr` in gwsteer's place, in the same topology: it answers the
/// client too (the reference), from the first free table at or above 100.
#[test]
fn sbr_in_the_same_topology_answers_as_the_reference() {
    let t = Topo::build("mhsbr");
    let nad = t.nad("lan", 0, json!({"type": "sbr"}));
    let result = t.run(&nad, "add", "net1").expect_ok("sbr NAD ADD");
    let (v4, v6) = addrs_of(&result);
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    assert!(t.answered(v4, &server), "sbr: not answered (v4)");
    assert!(t.answered(v6, &server), "sbr: not answered (v6)");
    let rules = ip(&t.pod, ["rule", "show"]);
    assert!(rules.contains(&format!("from {v4} lookup 100")), "{rules}");
    t.run(&nad, "del", "net1").expect_ok("sbr NAD DEL");
}

/// `side: "node"` on a macvlan attachment: the log and `show` say it relies
/// on the detour through the primary; with strict rp_filter on the node the
/// client gets nothing, with loose it is answered; the pod side is answered
/// under strict rp_filter.
#[test]
fn forcing_the_node_side_relies_on_the_detour_that_strict_rp_filter_drops() {
    let t = Topo::build("mhnode");
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    let node_policy = json!([{"name": "lan", "side": "node", "table": 200,
        "gateways": [{"via": "192.168.60.1", "dev": "ext0"}]}]);
    let nad = t.nad("lan", 0, t.gwsteer(node_policy));
    let result = t.run(&nad, "add", "net1").expect_ok("NAD ADD, node side");
    let (v4, _) = addrs_of(&result);
    let log = t.log_text();
    // One warning line says it all, with the network's context.
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("WARN"))
        .filter(|l| l.contains("steering lan: on the node side for net1"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains("rely on the detour"), "{log}");
    assert!(warned[0].contains("strict rp_filter"), "{log}");
    let show = gwsteer_cli(&t.node, &["show", "--state-dir", t.state.to_str().unwrap()]);
    assert!(
        show.stdout_raw.contains("rely on the detour"),
        "{}",
        show.stdout_raw
    );
    assert!(
        gw_rules_in(&t.node).contains(&format!("inet 1000: from {v4} lookup 200")),
        "{:?}",
        gw_rules_in(&t.node)
    );
    assert!(gw_rules_in(&t.pod).is_empty());
    // Strict rp_filter on the node: the reply arriving from the pod's
    // eth0 with net1's address is dropped.
    assert!(
        !t.answered(v4, &server),
        "answered through strict rp_filter"
    );
    // Loose: the detour works.
    t.lab.sysctl(&t.node, "net.ipv4.conf.all.rp_filter", "2");
    assert!(
        t.answered(v4, &server),
        "the detour did not work with loose rp_filter"
    );
    t.lab.sysctl(&t.node, "net.ipv4.conf.all.rp_filter", "1");
    t.run(&nad, "del", "net1").expect_ok("NAD DEL, node side");
    assert!(gw_rules_in(&t.node).is_empty());

    // The pod side under strict rp_filter.
    let nad = t.nad("lan", 0, t.gwsteer(json!([{"name": "lan", "side": "pod"}])));
    let result = t.run(&nad, "add", "net1").expect_ok("NAD ADD, pod side");
    let (v4, _) = addrs_of(&result);
    assert!(
        t.answered(v4, &server),
        "pod side not answered under strict rp_filter"
    );
    t.run(&nad, "del", "net1").expect_ok("NAD DEL, pod side");
    assert!(gw_rules_in(&t.pod).is_empty());
}

/// A service bound to every address answers a VIP on the pod's `lo`: the
/// reply's source is the VIP, which no `source` rule matches; connmark in
/// the pod sends it out of `net1` all the same.
#[test]
fn connmark_in_the_pod_answers_a_vip_on_lo_via_net1() {
    let t = Topo::build("mhvip");
    ip(&t.pod, ["addr", "add", "203.0.113.7/32", "dev", "lo"]);
    ip(&t.pod, ["addr", "add", "fd00:113::7/128", "dev", "lo"]);
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    let vip4: IpAddr = "203.0.113.7".parse().unwrap();
    let vip6: IpAddr = "fd00:113::7".parse().unwrap();

    // `source` on the pod side: net1's own address is answered, the VIP not.
    let source = t.nad("lan", 0, t.gwsteer(json!([{"name": "lan", "side": "pod"}])));
    let result = t.run(&source, "add", "net1").expect_ok("source NAD ADD");
    let (v4, v6) = addrs_of(&result);
    ip(
        &t.rtr,
        ["route", "replace", "203.0.113.7/32", "via", &v4.to_string()],
    );
    ip(
        &t.rtr,
        [
            "route",
            "replace",
            "fd00:113::7/128",
            "via",
            &v6.to_string(),
        ],
    );
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    assert!(t.answered(v4, &server));
    assert!(
        !t.answered(vip4, &server),
        "VIP answered by source steering (v4)"
    );
    assert!(
        !t.answered(vip6, &server),
        "VIP answered by source steering (v6)"
    );
    t.run(&source, "del", "net1").expect_ok("source NAD DEL");

    // `connmark` on the pod side: the VIP is answered, by net1.
    let connmark = t.nad(
        "lan",
        0,
        t.gwsteer(json!([{"name": "vip", "side": "pod", "match": "connmark", "mark": "0x14"}])),
    );
    let result = t
        .run(&connmark, "add", "net1")
        .expect_ok("connmark NAD ADD");
    let (v4, v6) = addrs_of(&result);
    ip(
        &t.rtr,
        ["route", "replace", "203.0.113.7/32", "via", &v4.to_string()],
    );
    ip(
        &t.rtr,
        [
            "route",
            "replace",
            "fd00:113::7/128",
            "via",
            &v6.to_string(),
        ],
    );
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    count_replies(&t.pod, server.addr().port());
    assert!(
        t.answered(vip4, &server),
        "VIP not answered with connmark (v4)"
    );
    assert!(
        t.answered(vip6, &server),
        "VIP not answered with connmark (v6)"
    );
    assert!(counted(&t.pod, "net1") > 0);
    assert_eq!(counted(&t.pod, "eth0"), 0);
    // Pod-initiated traffic is untouched: no mark on the pod's own connections.
    assert_eq!(
        gw_nft_tables_in(&t.pod),
        vec!["gwsteer-vip-net1".to_string()]
    );
    assert!(gw_nft_tables_in(&t.node).is_empty());
    t.run(&connmark, "check", "net1")
        .expect_ok("connmark CHECK");
    t.run(&connmark, "del", "net1")
        .expect_ok("connmark NAD DEL");
    assert!(
        gw_nft_tables_in(&t.pod).is_empty(),
        "{:?}",
        gw_nft_tables_in(&t.pod)
    );
    assert!(gw_rules_in(&t.pod).is_empty());
    assert!(gw_routes_in(&t.pod).is_empty());
}

/// Two NADs (two gwsteer networks) in one pod: two tables, both answered;
/// each DEL removes only its own; GC removes what no valid attachment
/// holds, inside the pod.
#[test]
fn two_nads_in_one_pod_get_two_tables_and_each_del_removes_its_own() {
    let t = Topo::build("mhtwo");
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    let state_b = t.lab.subdir("state-b");
    let a = t.nad(
        "lan-a",
        0,
        t.gwsteer(json!([{"name": "lan", "side": "pod"}])),
    );
    let mut b_plugin = t.gwsteer(json!([{"name": "lan", "side": "pod"}]));
    b_plugin["stateDir"] = json!(state_b);
    let b = t.nad("lan-b", 1, b_plugin);
    let (a4, _) = addrs_of(&t.run(&a, "add", "net1").expect_ok("NAD a ADD"));
    let (b4, b6) = addrs_of(&t.run(&b, "add", "net2").expect_ok("NAD b ADD"));
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    assert!(t.answered(a4, &server));
    assert!(t.answered(b4, &server));
    assert!(t.answered(b6, &server));
    let tables = tables_of_rules(&t.pod);
    assert_eq!(tables.len(), 2, "{tables:?}");
    t.run(&a, "del", "net1").expect_ok("NAD a DEL");
    let left = gw_rules_in(&t.pod);
    assert!(
        left.iter().all(|r| !r.contains(&a4.to_string())),
        "{left:?}"
    );
    assert!(left.iter().any(|r| r.contains(&b4.to_string())), "{left:?}");
    assert_eq!(tables_of_rules(&t.pod).len(), 1);
    assert!(t.answered(b4, &server), "b lost its steering with a's DEL");

    // GC (CNI 1.1.0) with no valid attachment: b's pod-side objects go.
    let gc = CniCall::new(
        "GC",
        "",
        "",
        json!({"cniVersion": "1.1.0", "name": "lan-b", "type": "gwsteer",
               "stateDir": state_b, "steering": [{"name": "lan", "side": "pod"}],
               "cni.dev/valid-attachments": []}),
    );
    invoke(&t.node, &gwsteer_bin(), &gc).expect_ok("GC");
    assert!(gw_rules_in(&t.pod).is_empty(), "{:?}", gw_rules_in(&t.pod));
    assert!(gw_routes_in(&t.pod).is_empty());
    t.run(&b, "del", "net2").expect_ok("NAD b DEL after GC");
}

/// Two pod-side `connmark` attachments in one pod with the same mark would
/// meet in the pod's fwmark rules: the first rule would route the replies
/// of both. The second ADD is refused (code 7, naming the mark and the
/// table that has it) before it changes anything; with a mark of its own it
/// is made, and each attachment's replies leave by its own interface.
#[test]
fn a_second_pod_side_connmark_attachment_needs_a_mark_of_its_own() {
    let t = Topo::build("mhmark");
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    let state_b = t.lab.subdir("state-b");
    let connmark =
        |mark: &str| json!([{"name": "vip", "side": "pod", "match": "connmark", "mark": mark}]);
    let a = t.nad("lan-a", 0, t.gwsteer(connmark("0x14")));
    let (a4, a6) = addrs_of(&t.run(&a, "add", "net1").expect_ok("NAD a ADD"));
    let rules_a = gw_rules_in(&t.pod);
    let tables_a = gw_nft_tables_in(&t.pod);

    let nad_b = |mark: &str| {
        let mut plugin = t.gwsteer(connmark(mark));
        plugin["stateDir"] = json!(state_b);
        t.nad("lan-b", 1, plugin)
    };
    let same = nad_b("0x14");
    let refused = t.run(&same, "add", "net2");
    assert_eq!(
        refused.expect_error("NAD b ADD with a's mark"),
        7,
        "{refused}"
    );
    let msg = refused.error_msg().unwrap_or_default();
    assert!(
        msg.contains("0x14") && msg.contains("another attachment"),
        "{msg}"
    );
    assert_eq!(
        gw_rules_in(&t.pod),
        rules_a,
        "the refused ADD changed the pod's rules"
    );
    assert_eq!(
        gw_nft_tables_in(&t.pod),
        tables_a,
        "the refused ADD made an nftables table"
    );
    t.run(&same, "del", "net2")
        .expect_ok("NAD b DEL after the refusal");

    let own = nad_b("0x15");
    let (b4, b6) = addrs_of(
        &t.run(&own, "add", "net2")
            .expect_ok("NAD b ADD with its own mark"),
    );
    assert_eq!(tables_of_rules(&t.pod).len(), 2);
    assert_eq!(gw_nft_tables_in(&t.pod).len(), 2);
    // Each attachment's connections are answered by its own interface.
    wait_no_tentative(&t.pod, Duration::from_secs(5));
    for addr in [a4, a6, b4, b6] {
        assert!(t.answered(addr, &server), "{addr} not answered");
    }
    t.run(&own, "del", "net2").expect_ok("NAD b DEL");
    t.run(&a, "del", "net1").expect_ok("NAD a DEL");
    assert!(gw_rules_in(&t.pod).is_empty(), "{:?}", gw_rules_in(&t.pod));
    assert!(gw_nft_tables_in(&t.pod).is_empty());
}

/// `auto` without a host-side interface in prevResult asks the pod: a veth
/// (what Calico's result looks like) stays on the node; a macvlan, with a
/// prevResult that lists no interfaces at all, goes into the pod.
#[test]
fn auto_asks_the_pod_interface_when_prevresult_does_not_say() {
    let t = Topo::build("mhauto");
    let server = TcpServer::start(&t.pod, "[::]:0".parse().unwrap());
    let plugin = |prev: Value| {
        let mut c = t.gwsteer(json!([{"name": "lan", "table": 300,
            "gateways": [{"via": "192.168.60.1"}]}]));
        c["cniVersion"] = json!("1.0.0");
        c["name"] = json!("direct");
        c["prevResult"] = prev;
        c
    };
    let add = |ifname: &str, conf: Value| {
        let call = CniCall::new("ADD", "ctr9", ifname, conf).netns(&netns_path(&t.pod));
        invoke(&t.node, &gwsteer_bin(), &call)
    };
    let del = |ifname: &str, conf: Value| {
        let call = CniCall::new("DEL", "ctr9", ifname, conf).netns(&netns_path(&t.pod));
        invoke(&t.node, &gwsteer_bin(), &call).expect_ok("DEL");
    };
    // The primary's eth0 (a veth), reported with its sandbox only.
    let eth0 = ip(&t.pod, ["-j", "-4", "addr", "show", "dev", "eth0"]);
    let eth0: Value = serde_json::from_str(&eth0).unwrap();
    let local = eth0[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap()
        .to_string();
    let veth_prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": netns_path(&t.pod)}],
        "ips": [{"interface": 0, "address": format!("{local}/24")}]});
    add("eth0", plugin(veth_prev.clone())).expect_ok("ADD on a veth");
    assert!(
        gw_rules_in(&t.node).contains(&format!("inet 1000: from {local} lookup 300")),
        "{:?}",
        gw_rules_in(&t.node)
    );
    assert!(gw_rules_in(&t.pod).is_empty());
    assert!(!t.log_text().contains("pod side"), "{}", t.log_text());
    del("eth0", plugin(veth_prev));
    assert!(gw_rules_in(&t.node).is_empty());

    // A macvlan made by hand, and a prevResult with addresses only.
    ip(
        &t.node,
        [
            "link", "add", "mv9", "link", "ext0", "type", "macvlan", "mode", "bridge",
        ],
    );
    ip(&t.node, ["link", "set", "mv9", "netns", t.pod.as_str()]);
    ip(&t.pod, ["link", "set", "mv9", "name", "net9"]);
    ip(&t.pod, ["addr", "add", "192.168.60.50/24", "dev", "net9"]);
    ip(&t.pod, ["link", "set", "net9", "up"]);
    let mv_prev = json!({"cniVersion": "1.0.0",
        "ips": [{"address": "192.168.60.50/24", "gateway": "192.168.60.1"}]});
    add("net9", plugin(mv_prev.clone())).expect_ok("ADD on a macvlan");
    assert!(
        t.log_text()
            .contains("on the pod side of net9 (net9 is a macvlan device"),
        "{}",
        t.log_text()
    );
    assert!(gw_rules_in(&t.node).is_empty());
    assert!(t.answered("192.168.60.50".parse().unwrap(), &server));
    del("net9", plugin(mv_prev));
    assert!(gw_rules_in(&t.pod).is_empty());
    assert!(gw_routes_in(&t.pod).is_empty());
}

/// `gwsteer cleanup` removes pod-side objects inside the pod the record
/// names (rules, table routes, the connmark nftables table).
#[test]
fn cleanup_removes_pod_side_objects_inside_the_pod() {
    let t = Topo::build("mhclean");
    let nad = t.nad(
        "lan",
        0,
        t.gwsteer(json!([
            {"name": "lan", "side": "pod"},
            {"name": "vip", "side": "pod", "match": "connmark", "mark": "0x14", "priority": 1100}
        ])),
    );
    t.run(&nad, "add", "net1").expect_ok("NAD ADD");
    assert!(!gw_rules_in(&t.pod).is_empty());
    assert_eq!(
        gw_nft_tables_in(&t.pod),
        vec!["gwsteer-vip-net1".to_string()]
    );
    let out = gwsteer_cli(
        &t.node,
        &["cleanup", "--state-dir", t.state.to_str().unwrap()],
    );
    assert!(out.success(), "{out}");
    assert!(gw_rules_in(&t.pod).is_empty(), "{:?}", gw_rules_in(&t.pod));
    assert!(
        gw_routes_in(&t.pod).is_empty(),
        "{:?}",
        gw_routes_in(&t.pod)
    );
    assert!(
        gw_nft_tables_in(&t.pod).is_empty(),
        "{:?}",
        gw_nft_tables_in(&t.pod)
    );
    t.run(&nad, "del", "net1")
        .expect_ok("NAD DEL after cleanup");
}
