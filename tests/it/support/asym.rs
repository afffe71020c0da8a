//! The asymmetric-routing topology of `tests/demo.sh`, for the source-steering
//! tests (`source_steering.rs`, `libcni.rs`, `explain.rs`, `logs.rs`).
//!
//! ```text
//!   clib ── rtrb ── eth-b ┐
//!                         node ── cni0 ── pods (10.244.1.0/24, fd00:244:0:1::/64)
//!   clia ── rtra ── eth-a ┘  (default route via rtra, v4 and v6)
//! ```
//!
//! Router A has no route to client B's network, so a pod's replies to client B
//! that leave by the node's default route are lost; both routers route the
//! cluster CIDRs (10.244.0.0/16, fd00:244::/48) to the node.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

pub const POD_V4: &str = "10.244.1.0/24";
pub const POD_V6: &str = "fd00:244:0:1::/64";
pub const CLUSTER_V4: &str = "10.244.0.0/16";
pub const CLUSTER_V6: &str = "fd00:244::/48";

pub const RTR_A_V4: &str = "192.168.1.1";
pub const RTR_A_V6: &str = "fd00:1::1";
pub const RTR_B_V4: &str = "192.168.2.1";
pub const RTR_B_V6: &str = "fd00:2::1";
pub const CLIENT_A_V4: &str = "10.1.0.2";
pub const CLIENT_A_V6: &str = "fd00:a::2";
pub const CLIENT_B_V4: &str = "10.2.0.2";
pub const CLIENT_B_V6: &str = "fd00:b::2";

/// gwsteer's rule/route protocol number as `ip -N` prints it.
pub const PROTO: &str = "211";

/// Patience for traffic that must get through.
pub const OK: Duration = Duration::from_secs(3);
/// Patience for traffic that must not (a lost SYN-ACK shows as a connect timeout).
pub const FAIL: Duration = Duration::from_millis(1200);

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The namespaces of the topology (full names).
pub struct Topo {
    pub node: String,
    pub rtra: String,
    pub rtrb: String,
    pub clia: String,
    pub clib: String,
}

impl Topo {
    /// Builds node, routers and clients in `lab` (IPv4 and IPv6).
    pub fn build(lab: &Lab) -> Topo {
        // The node forwards, as a Kubernetes node does.
        let node = lab.router("node");
        // Routers A and B (192.168.1.1, 192.168.2.1), clients A and B
        // (10.1.0.2, 10.2.0.2): see `support::topo`.
        let rtra = router_link(lab, &node, 'a', &[CLUSTER_V4, CLUSTER_V6]);
        let rtrb = router_link(lab, &node, 'b', &[CLUSTER_V4, CLUSTER_V6]);
        let clia = client_behind(lab, &rtra, 'a');
        let clib = client_behind(lab, &rtrb, 'b');
        lab.route(&node, &["add", "default", "via", RTR_A_V4]);
        lab.route(&node, &["add", "default", "via", RTR_A_V6]);
        Topo {
            node,
            rtra,
            rtrb,
            clia,
            clib,
        }
    }
}

/// A `source` policy: table `table`, router B (v4 and v6, on eth-b) as gateways,
/// and the cluster CIDRs excluded.
pub fn source_policy(name: &str, table: u32) -> Value {
    json!({
        "name": name,
        "table": table,
        "gateways": [
            {"via": RTR_B_V4, "dev": "eth-b"},
            {"via": RTR_B_V6, "dev": "eth-b"},
        ],
        "exclude": [CLUSTER_V4, CLUSTER_V6],
    })
}

/// bridge `cni0` + host-local on the pod subnets, then gwsteer with `plugin`
/// (keys added to the gwsteer object, e.g. `{"steering": [...]}`);
/// `None` for the plain conflist without gwsteer.
pub fn conflist(lab: &Lab, network: &str, version: &str, plugin: Option<Value>) -> Value {
    bridge_conflist(
        network,
        version,
        "cni0",
        &[POD_V4, POD_V6],
        &lab.subdir("ipam"),
        match plugin {
            Some(extra) => gwsteer_plugin(&state_dir(lab), extra),
            None => Value::Null,
        },
    )
}

/// The conflist of most source-steering tests: [`conflist`] with gwsteer
/// steering by one [`source_policy`], `oam` in table 100.
pub fn oam_conflist(lab: &Lab, network: &str, version: &str) -> Value {
    conflist(
        lab,
        network,
        version,
        Some(json!({"steering": [source_policy("oam", 100)]})),
    )
}

/// The gwsteer state dir of a lab's conflists.
pub fn state_dir(lab: &Lab) -> PathBuf {
    lab.subdir("state")
}

/// A pod attached by a conflist.
#[derive(Debug, Clone)]
pub struct Pod {
    pub ns: String,
    pub cid: String,
    pub cni_args: String,
    pub v4: IpAddr,
    pub v6: IpAddr,
    /// The conflist's ADD result.
    pub result: Value,
}

impl Pod {
    pub fn sock4(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.v4, port)
    }
    pub fn sock6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.v6, port)
    }
    pub fn path(&self) -> String {
        netns_path(&self.ns)
    }
    /// TCP servers on port 8080, v4 and v6.
    pub fn serve(&self) -> (TcpServer, TcpServer) {
        (
            TcpServer::start(&self.ns, self.sock4(8080)),
            TcpServer::start(&self.ns, self.sock6(8080)),
        )
    }
}

/// The pod addresses of a CNI result, (v4, v6).
pub fn result_addrs(result: &Value) -> (IpAddr, IpAddr) {
    let ips: Vec<IpAddr> = result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips in {result}"))
        .iter()
        .map(|i| {
            let a = i["address"].as_str().unwrap();
            a.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    let v4 = *ips.iter().find(|a| a.is_ipv4()).expect("an IPv4 address");
    let v6 = *ips.iter().find(|a| a.is_ipv6()).expect("an IPv6 address");
    (v4, v6)
}

/// ADDs `cid` (ifname eth0) in the lab's pod netns `ns` (made if absent) with
/// the Rust conflist runner, as a pod of Kubernetes namespace `k8s_ns`.
pub fn add_pod(lab: &Lab, node: &str, conf: &Value, ns: &str, cid: &str, k8s_ns: &str) -> Pod {
    let wanted = format!("{}-{ns}", lab.prefix());
    let full = if lab.namespaces().contains(&wanted) {
        wanted
    } else {
        lab.netns(ns)
    };
    let cni_args = k8s_cni_args(k8s_ns, ns, cid);
    let result = conflist_add(node, conf, cid, &netns_path(&full), "eth0", Some(&cni_args))
        .unwrap_or_else(|o| panic!("ADD {cid}: {o}"));
    let (v4, v6) = result_addrs(&result);
    Pod {
        ns: full,
        cid: cid.to_string(),
        cni_args,
        v4,
        v6,
        result,
    }
}

/// DELs a pod added with [`add_pod`] through the same conflist.
pub fn del_pod(node: &str, conf: &Value, pod: &Pod) {
    conflist_del(
        node,
        conf,
        &pod.cid,
        Some(&pod.path()),
        "eth0",
        Some(&pod.cni_args),
        Some(&pod.result),
    )
    .unwrap_or_else(|o| panic!("DEL {}: {o}", pod.cid));
}

/// Requests from the client in namespace `client` (its addresses `v4`,
/// `v6`) to `pod`'s servers on port 8080, v4 and v6, with the address the
/// pod must see.
pub fn from_client<'a>(
    client: &'a str,
    pod: &Pod,
    v4: &str,
    v6: &str,
) -> Vec<(&'a str, SocketAddr, IpAddr)> {
    vec![
        (client, pod.sock4(8080), addr(v4)),
        (client, pod.sock6(8080), addr(v6)),
    ]
}

/// Requests without the expected peer, for [`assert_unanswered`].
pub fn without_peer<T: Copy, U: Copy, V>(reqs: &[(T, U, V)]) -> Vec<(T, U)> {
    reqs.iter().map(|(a, b, _)| (*a, *b)).collect()
}

/// TCP requests from (netns, to address), all at once (expected failures
/// cost one timeout, not one each).
pub fn requests<S: AsRef<str> + Sync>(
    reqs: &[(S, SocketAddr)],
    timeout: Duration,
) -> Vec<Result<Pong, String>> {
    thread::scope(|s| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|(ns, addr)| s.spawn(move || tcp_pong(ns.as_ref(), *addr, timeout)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Every request (netns, to address, expected peer) is answered, and the
/// server saw the client's own address.
pub fn assert_answered<S: AsRef<str> + Sync>(what: &str, reqs: &[(S, SocketAddr, IpAddr)]) {
    let plain: Vec<(&str, SocketAddr)> = reqs.iter().map(|(n, a, _)| (n.as_ref(), *a)).collect();
    for ((ns, addr, peer), got) in reqs.iter().zip(requests(&plain, OK)) {
        let ns = ns.as_ref();
        match got {
            Ok(pong) => {
                assert_eq!(pong.local, *addr, "{what}: {ns} -> {addr}");
                assert_eq!(
                    pong.peer, *peer,
                    "{what}: {ns} -> {addr}: server saw {pong:?}"
                );
            }
            Err(e) => panic!("{what}: {ns} -> {addr} must be answered: {e}"),
        }
    }
}

/// No request (netns, to address) gets an answer.
pub fn assert_unanswered<S: AsRef<str> + Sync>(what: &str, reqs: &[(S, SocketAddr)]) {
    for ((ns, addr), got) in reqs.iter().zip(requests(reqs, FAIL)) {
        if let Ok(pong) = got {
            panic!(
                "{what}: {} -> {addr} must not be answered, got {pong:?}",
                ns.as_ref()
            );
        }
    }
}

/// `ip -n <ns> -j -N <args…>` (numeric protocol and table) as a list.
fn ip_list(ns: &str, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["-N"];
    full.extend_from_slice(args);
    match ip_json(ns, &full) {
        Value::Array(a) => a,
        other => panic!("ip {args:?}: not a list: {other}"),
    }
}

/// Every rule of `family` in `ns`, numeric.
pub fn all_rules(ns: &str, family: Family) -> Vec<Value> {
    ip_list(ns, &[family.flag(), "rule"])
}

/// gwsteer's rules (protocol 211) of `family` in `ns`, numeric.
pub fn our_rules(ns: &str, family: Family) -> Vec<Value> {
    all_rules(ns, family)
        .into_iter()
        .filter(|r| r["protocol"] == PROTO)
        .collect()
}

/// Routes of `table` (numeric); a table that does not exist is empty.
pub fn table(ns: &str, family: Family, table: u32) -> Vec<Value> {
    let t = table.to_string();
    let args = [
        "-j",
        "-N",
        family.flag(),
        "route",
        "show",
        "table",
        t.as_str(),
    ];
    match try_ip(ns, args) {
        Ok(out) if out.trim().is_empty() => vec![],
        Ok(out) => match serde_json::from_str(&out) {
            Ok(Value::Array(a)) => a,
            other => panic!("ip {args:?}: {other:?}"),
        },
        Err(e) if e.stderr.contains("table does not exist") => vec![],
        Err(e) => panic!("{e}"),
    }
}

/// The rules gwsteer makes for one pod address: `priority − 1` exclusion
/// rules (to each CIDR, lookup main) and the steering rule at `priority`,
/// as `ip -j -N rule` prints them.
pub fn expected_rules(pod: IpAddr, priority: u32, table: u32, exclude: &[&str]) -> Vec<Value> {
    let mut out: Vec<Value> = exclude
        .iter()
        .map(|cidr| {
            let (dst, len) = cidr.split_once('/').unwrap();
            json!({
                "priority": priority - 1,
                "src": pod.to_string(),
                "dst": dst,
                "dstlen": len.parse::<u32>().unwrap(),
                "table": "254",
                "protocol": PROTO,
            })
        })
        .collect();
    out.push(json!({
        "priority": priority,
        "src": pod.to_string(),
        "table": table.to_string(),
        "protocol": PROTO,
    }));
    out
}

/// Sorted copy (by JSON text) for order-insensitive comparisons.
pub fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

/// `ip -j route show table` of a single-gateway default route made by gwsteer.
pub fn expected_default(family: Family, gateway: &str, dev: &str) -> Value {
    match family {
        Family::V4 => json!({
            "dst": "default", "gateway": gateway, "dev": dev,
            "protocol": PROTO, "flags": [],
        }),
        Family::V6 => json!({
            "dst": "default", "gateway": gateway, "dev": dev,
            "protocol": PROTO, "metric": 1024, "flags": [], "pref": "medium",
        }),
    }
}

/// The route tables 100 gets from [`source_policy`], per family.
pub fn expected_table_100(family: Family) -> Vec<Value> {
    match family {
        Family::V4 => vec![expected_default(family, RTR_B_V4, "eth-b")],
        Family::V6 => vec![expected_default(family, RTR_B_V6, "eth-b")],
    }
}

/// Attachment records in the state store of `network` (file names).
pub fn records(state_dir: &Path, network: &str) -> Vec<String> {
    let dir = state_dir.join(network).join("attachments");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// No gwsteer rule in either family, the tables empty, no attachment record.
pub fn assert_nothing_left(node: &str, state_dir: &Path, network: &str, tables: &[u32]) {
    for family in [Family::V4, Family::V6] {
        assert_eq!(
            our_rules(node, family),
            Vec::<Value>::new(),
            "gwsteer {family:?} rules left"
        );
        for t in tables {
            assert_eq!(
                table(node, family, *t),
                Vec::<Value>::new(),
                "{family:?} table {t} not empty"
            );
        }
    }
    assert_eq!(
        records(state_dir, network),
        Vec::<String>::new(),
        "attachment records left"
    );
}

/// `ip -j -N route get <dst> from <src> iif <iif>` in `ns`: the route a
/// forwarded packet takes.
pub fn route_get(ns: &str, dst: IpAddr, src: IpAddr, iif: &str) -> Value {
    let (d, s) = (dst.to_string(), src.to_string());
    let got = ip_list(ns, &["route", "get", &d, "from", &s, "iif", iif]);
    assert_eq!(got.len(), 1, "route get {d} from {s}: {got:?}");
    got[0].clone()
}

/// Runs only the gwsteer plugin (index 1 of `conf`) for `pod`, as the runtime
/// does inside the chain: `prev` is the previous plugin's result.
pub fn gwsteer_call(
    node: &str,
    conf: &Value,
    command: &str,
    pod: &Pod,
    prev: Option<&Value>,
) -> CniOutcome {
    let (cfg, ty, _) = plugin_config(conf, 1, prev);
    assert_eq!(ty, "gwsteer", "plugin 1 of {conf}");
    let call = CniCall::new(command, &pod.cid, "eth0", cfg)
        .netns(&pod.path())
        .cni_args(&pod.cni_args);
    invoke(node, &gwsteer_bin(), &call)
}

/// Waits until bridge `dev` in `ns` has lost its carrier (no port left), so
/// its routes carry their settled `linkdown` flag: the kernel drops the
/// carrier asynchronously after the last port goes.
pub fn wait_bridge_carrier_off(ns: &str, dev: &str) {
    wait_for(
        &format!("{dev} in {ns} to lose its carrier"),
        Duration::from_secs(5),
        || {
            let link = ip_json(ns, &["link", "show", "dev", dev]);
            link[0]["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("NO-CARRIER")))
                && routes(ns, Family::V4, "main")
                    .iter()
                    .filter(|r| r["dev"] == dev)
                    .all(|r| {
                        r["flags"]
                            .as_array()
                            .is_some_and(|f| f.contains(&json!("linkdown")))
                    })
        },
    );
}
