//! The VRF tier: tests that need a kernel with VRF (`CONFIG_NET_VRF`), which
//! the project's machines lack. They run inside a qemu guest booted with
//! Debian's stock kernel (VRF as a module) over this machine's own filesystem:
//!
//!     bash tests/vrf/run.sh            # builds on the host, runs them in the guest
//!
//! The guest runner (`tests/vrf/run-in-guest.sh`) sets `GWSTEER_VRF_GUEST=1`.
//! Without it (a plain `cargo test` on the host) every test here prints
//! "skipped: not in the VRF guest" and returns. With it, a kernel that cannot
//! make a VRF device fails the test: the guest must have VRF.

// The harness of tests/it, shared by path: this file stays a crate of its own
// (tests/vrf/run.sh builds it alone and runs its binary in the guest).
#[path = "it/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use serde_json::json;
use support::examples::{Run, example_node, load, pod_ips};
use support::reliability::{Node, prev_result};
use support::*;

const GUEST_ENV: &str = "GWSTEER_VRF_GUEST";

/// True inside the VRF guest (after checking its kernel really makes VRF
/// devices); false, with a visible "skipped" line, anywhere else.
fn in_vrf_guest(test: &str) -> bool {
    if std::env::var(GUEST_ENV).is_ok_and(|v| v == "1") {
        assert_kernel_makes_vrf();
        return true;
    }
    // Straight to the stderr handle: the test harness does not capture it,
    // so the skip shows in `cargo test` output even when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: not in the VRF guest ({GUEST_ENV}=1 unset; run `bash tests/vrf/run.sh`)"
    );
    false
}

/// Panics unless a VRF device can be created in a fresh namespace.
fn assert_kernel_makes_vrf() {
    let lab = Lab::new("vrfprobe");
    let ns = lab.netns("probe");
    if let Err(e) = try_ip(
        &ns,
        ["link", "add", "vrfprobe", "type", "vrf", "table", "4242"],
    ) {
        panic!(
            "{GUEST_ENV}=1 but this kernel ({}) cannot make a VRF device: {e}",
            kernel_release()
        );
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|e| format!("unknown: {e}"))
}

/// gwsteer's own check agrees with the guest kernel: VRF is there.
#[test]
fn guest_kernel_supports_vrf() {
    if !in_vrf_guest("guest_kernel_supports_vrf") {
        return;
    }
    assert!(
        gwsteer::kernel::vrf_supported(),
        "gwsteer::kernel::vrf_supported() is false on {}, which makes VRF devices",
        kernel_release()
    );
    gwsteer::kernel::require_vrf().expect("require_vrf in the VRF guest");
}

/// The gwsteer binary the harness uses (CARGO_BIN_EXE_gwsteer, a host path
/// baked in at compile time) is there and runs in the guest.
#[test]
fn guest_runs_the_gwsteer_binary() {
    if !in_vrf_guest("guest_runs_the_gwsteer_binary") {
        return;
    }
    let bin = gwsteer_bin();
    assert!(
        bin.is_file(),
        "{} (CARGO_BIN_EXE_gwsteer) is not visible in the guest",
        bin.display()
    );
    let lab = Lab::new("vrfbin");
    let node = lab.netns("node");
    let out = gwsteer_cli(&node, &["version"]);
    assert!(out.success(), "gwsteer version in the guest:\n{out}");
    assert!(out.stdout_raw.starts_with("gwsteer "), "{out}");
}

/// End-to-end proof of the guest tier, with `ip` alone (no gwsteer yet): a
/// pod in the default VRF reaches a router behind an uplink enslaved to VRF
/// table 10 through a veth pair (host leg in the default VRF, VRF leg
/// enslaved), and the router's replies come back only through the leak route
/// in table 10 via the host leg.
///
/// ```text
///  pod eth0 10.20.0.5 ── veth-pod 10.20.0.1 [node, default VRF]
///                         gwl-host 169.254.10.1 ═╗ veth pair
///                         gwl-vrf  169.254.10.2 ═╝ enslaved to vrf-blue (table 10)
///                         up0      10.30.0.1 (enslaved) ── eth0 10.30.0.2 rtr
/// ```
#[test]
fn vrf_leg_and_leak_route_carry_traffic() {
    if !in_vrf_guest("vrf_leg_and_leak_route_carry_traffic") {
        return;
    }
    const T: Duration = Duration::from_secs(5);
    let lab = Lab::new("vrfsmoke");
    let node = lab.router("node");
    let pod = lab.netns("pod");
    let rtr = lab.netns("rtr");

    // Pod in the node's default VRF.
    lab.veth(&node, "veth-pod", &pod, "eth0");
    lab.addr(&node, "veth-pod", "10.20.0.1/24");
    lab.addr(&pod, "eth0", "10.20.0.5/24");
    lab.route(&pod, &["add", "default", "via", "10.20.0.1"]);

    // The VRF, closed by an unreachable default so that nothing falls
    // through to the main table.
    lab.ip(
        &node,
        ["link", "add", "vrf-blue", "type", "vrf", "table", "10"],
    );
    lab.ip(&node, ["link", "set", "dev", "vrf-blue", "up"]);
    lab.route(
        &node,
        &[
            "add",
            "unreachable",
            "default",
            "table",
            "10",
            "metric",
            "4278198272",
        ],
    );

    // The kernel's VRF setup (Documentation/networking/vrf.rst): the local
    // table's rule moves below the l3mdev rule. Left at priority 0, the local
    // table answers first for VRF traffic too, so a packet arriving on the VRF
    // leg from the host leg's address has a local source (martian): not even
    // ARP between the two legs works.
    lab.ip(
        &node,
        ["rule", "add", "priority", "32765", "table", "local"],
    );
    lab.ip(&node, ["rule", "del", "priority", "0"]);

    // Uplink to the router, enslaved: its connected route moves to table 10.
    lab.veth(&node, "up0", &rtr, "eth0");
    lab.ip(&node, ["link", "set", "dev", "up0", "master", "vrf-blue"]);
    lab.addr(&node, "up0", "10.30.0.1/24");
    lab.addr(&rtr, "eth0", "10.30.0.2/24");
    lab.route(&rtr, &["add", "default", "via", "10.30.0.1"]);

    // The legs: one end in the default VRF, the other enslaved.
    lab.ip(
        &node,
        [
            "link", "add", "gwl-host", "type", "veth", "peer", "name", "gwl-vrf",
        ],
    );
    lab.ip(
        &node,
        ["link", "set", "dev", "gwl-vrf", "master", "vrf-blue"],
    );
    lab.ip(&node, ["link", "set", "dev", "gwl-host", "up"]);
    lab.ip(&node, ["link", "set", "dev", "gwl-vrf", "up"]);
    lab.addr(&node, "gwl-host", "169.254.10.1/30");
    lab.addr(&node, "gwl-vrf", "169.254.10.2/30");

    // Default VRF -> VRF: the router's network via the VRF leg.
    lab.route(
        &node,
        &[
            "add",
            "10.30.0.0/24",
            "via",
            "169.254.10.2",
            "dev",
            "gwl-host",
        ],
    );

    // Read back: the device is a VRF on table 10 and the uplink is its slave.
    let links = ip_json(&node, &["-d", "link", "show", "dev", "vrf-blue"]);
    let info = &links[0]["linkinfo"];
    assert_eq!(info["info_kind"], "vrf", "{links}");
    assert_eq!(info["info_data"]["table"], 10, "{links}");
    for slave in ["up0", "gwl-vrf"] {
        let l = ip_json(&node, &["link", "show", "dev", slave]);
        assert_eq!(l[0]["master"], "vrf-blue", "{slave}: {l}");
    }
    let has_route = |dst: &str| {
        routes(&node, Family::V4, 10)
            .iter()
            .any(|r| r["dst"] == dst && r.get("type").is_none_or(|t| t == "unicast"))
    };
    assert!(
        has_route("10.30.0.0/24"),
        "uplink route not in table 10: {:?}",
        routes(&node, Family::V4, 10)
    );

    // Without the leak route the replies hit table 10's unreachable default.
    assert!(
        !ping(&pod, "10.30.0.2", None, false),
        "pod reached the router with no leak route in table 10"
    );

    // The leak: the pod's address in table 10, back via the host leg.
    lab.route(
        &node,
        &[
            "add",
            "10.20.0.5/32",
            "via",
            "169.254.10.1",
            "dev",
            "gwl-vrf",
            "table",
            "10",
        ],
    );
    assert!(
        has_route("10.20.0.5"),
        "{:?}",
        routes(&node, Family::V4, 10)
    );
    wait_for("pod -> router ping across the VRF", T, || {
        ping(&pod, "10.30.0.2", None, false)
    });
    assert!(
        ping(&rtr, "10.20.0.5", None, false),
        "router -> pod ping across the VRF"
    );

    // And the leak really is what carries the replies.
    lab.route(&node, &["del", "10.20.0.5/32", "table", "10"]);
    assert!(
        !ping(&pod, "10.30.0.2", None, false),
        "pod still reaches the router after the leak route was deleted"
    );
}

/// The `vrf` section of the guest tests: VRF `vrf-oam` on table 10, legs
/// gl-host (default VRF) and gl-vrf (enslaved), both families.
fn vrf_section(leak: Value) -> Value {
    let mut v = json!({
        "name": "vrf-oam",
        "table": 10,
        "legs": {
            "host": {"name": "gl-host", "addresses": ["192.169.1.1/30", "fd00:169::1/64"]},
            "vrf": {"name": "gl-vrf", "addresses": ["192.169.1.2/30", "fd00:169::2/64"]}
        }
    });
    if let Value::Object(extra) = leak {
        for (k, x) in extra {
            v[k] = x;
        }
    }
    v
}

/// (dst, gateway, dev, type) of table `table`'s routes, both families, sorted.
fn table_routes(ns: &str, table: u32) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| routes(ns, f, table))
        .filter(|r| r.get("protocol").is_none_or(|p| p != "kernel"))
        .filter(|r| {
            r.get("type")
                .is_none_or(|t| t != "local" && t != "multicast")
        })
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            // IPv6 shows an unreachable route on `lo`; IPv4 on no device.
            let dev = if s("type") == "unreachable" {
                String::new()
            } else {
                s("dev")
            };
            (s("dst"), s("gateway"), dev, s("type"))
        })
        .collect();
    out.sort();
    out
}

fn leak(dst: &str, via: &str) -> (String, String, String, String) {
    (dst.into(), via.into(), "gl-vrf".into(), String::new())
}

fn unreachables() -> Vec<(String, String, String, String)> {
    vec![
        (
            "default".into(),
            String::new(),
            String::new(),
            "unreachable".into(),
        ),
        (
            "default".into(),
            String::new(),
            String::new(),
            "unreachable".into(),
        ),
    ]
}

fn link(ns: &str, dev: &str) -> Option<Value> {
    try_ip(ns, ["-j", "-d", "link", "show", "dev", dev])
        .ok()
        .and_then(|out| serde_json::from_str::<Value>(&out).ok())
        .and_then(|v| v.get(0).cloned())
}

/// leak "pod": ADD makes the VRF, its closed table, the legs with their
/// addresses and each pod's /32 + /128 leak; DEL removes only that pod's
/// leaks; CHECK passes (the VRF table's kernel routes are no imposters);
/// `gwsteer cleanup` removes the VRF, the legs and every route.
#[test]
fn vrf_infrastructure_pod_leaks_del_and_cleanup() {
    if !in_vrf_guest("vrf_infrastructure_pod_leaks_del_and_cleanup") {
        return;
    }
    let node = Node::new("vrfinfra");
    let mut config = node.config("vrf-net", json!([]));
    config["vrf"] = vrf_section(json!({}));
    let p1 = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    let p2 = prev_result("10.244.1", "fd00:244:0:1", 6, &node.pod_netns);
    node.add("c1", &config, &p1).expect_ok("ADD c1");
    node.add("c2", &config, &p2).expect_ok("ADD c2");

    let vrf = link(&node.ns, "vrf-oam").expect("vrf-oam made");
    assert_eq!(vrf["linkinfo"]["info_kind"], "vrf", "{vrf}");
    assert_eq!(vrf["linkinfo"]["info_data"]["table"], 10, "{vrf}");
    let leg = link(&node.ns, "gl-vrf").expect("gl-vrf made");
    assert_eq!(leg["master"], "vrf-oam", "{leg}");
    let host = link(&node.ns, "gl-host").expect("gl-host made");
    assert!(host.get("master").is_none(), "{host}");
    for (dev, want) in [
        ("gl-host", ["192.169.1.1", "fd00:169::1"]),
        ("gl-vrf", ["192.169.1.2", "fd00:169::2"]),
    ] {
        let addrs = ip_json(&node.ns, &["addr", "show", "dev", dev]);
        let got: Vec<&str> = addrs[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["local"].as_str())
            .filter(|a| !a.starts_with("fe80"))
            .collect();
        assert_eq!(got, want, "{dev}: {addrs}");
    }
    assert_eq!(
        exec_in(
            &node.ns,
            "sysctl",
            ["-n", "net.ipv4.conf.gl-vrf.accept_local"]
        )
        .trim(),
        "1"
    );
    let mut want = unreachables();
    want.extend([
        leak("10.244.1.5", "192.169.1.1"),
        leak("10.244.1.6", "192.169.1.1"),
        leak("fd00:244:0:1::5", "fd00:169::1"),
        leak("fd00:244:0:1::6", "fd00:169::1"),
    ]);
    want.sort();
    assert_eq!(table_routes(&node.ns, 10), want);
    node.check("c2", &config, &p2).expect_ok("CHECK c2");

    node.del("c1", &config, &p1).expect_ok("DEL c1");
    let mut want = unreachables();
    want.extend([
        leak("10.244.1.6", "192.169.1.1"),
        leak("fd00:244:0:1::6", "fd00:169::1"),
    ]);
    want.sort();
    assert_eq!(table_routes(&node.ns, 10), want, "DEL c1 keeps c2's leaks");
    node.del("c2", &config, &p2).expect_ok("DEL c2");
    // Infrastructure stays until cleanup.
    assert_eq!(table_routes(&node.ns, 10), unreachables());
    assert!(link(&node.ns, "vrf-oam").is_some() && link(&node.ns, "gl-host").is_some());

    let out = node.cli(&["cleanup"]);
    assert!(out.success(), "cleanup:\n{out}");
    for dev in ["vrf-oam", "gl-host", "gl-vrf"] {
        assert!(link(&node.ns, dev).is_none(), "{dev} left after cleanup");
    }
    assert!(table_routes(&node.ns, 10).is_empty());
}

/// leak "cidr": the podCidrs routes are there while any pod is attached and
/// go with the last one; no per-pod leaks.
#[test]
fn vrf_cidr_leak_goes_with_the_last_attachment() {
    if !in_vrf_guest("vrf_cidr_leak_goes_with_the_last_attachment") {
        return;
    }
    let node = Node::new("vrfcidr");
    let mut config = node.config("vrf-net", json!([]));
    config["vrf"] = vrf_section(json!({
        "leak": "cidr", "podCidrs": ["10.244.0.0/16", "fd00:244::/48"]
    }));
    let p1 = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    let p2 = prev_result("10.244.1", "fd00:244:0:1", 6, &node.pod_netns);
    node.add("c1", &config, &p1).expect_ok("ADD c1");
    node.add("c2", &config, &p2).expect_ok("ADD c2");
    let mut want = unreachables();
    want.extend([
        leak("10.244.0.0/16", "192.169.1.1"),
        leak("fd00:244::/48", "fd00:169::1"),
    ]);
    want.sort();
    assert_eq!(table_routes(&node.ns, 10), want);
    node.del("c1", &config, &p1).expect_ok("DEL c1");
    assert_eq!(table_routes(&node.ns, 10), want, "c2 still holds the leak");
    node.del("c2", &config, &p2).expect_ok("DEL c2");
    assert_eq!(table_routes(&node.ns, 10), unreachables());
    assert!(node.cli(&["cleanup"]).success());
    assert!(link(&node.ns, "vrf-oam").is_none());
}

/// The OaM lab of the end-to-end VRF tests (IPv6 alike):
///
/// ```text
///  pod eth0 10.20.0.5 ── veth-pod 10.20.0.1 [node]
///  node up0 10.30.0.1 ── eth0 10.30.0.2 [rtr] eth1 10.40.0.1 ── eth0 10.40.0.5 [client]
/// ```
///
/// The router has no route back to the pod's network; a test that wants
/// one adds it.
struct OamLab {
    lab: Lab,
    node: String,
    pod: String,
    rtr: String,
    client: String,
}

fn oam_lab(tag: &str) -> OamLab {
    let oam = oam_uplink(tag);
    let OamLab { lab, node, pod, .. } = &oam;
    lab.veth(node, "veth-pod", pod, "eth0");
    for a in ["10.20.0.1/24", "fd00:20::1/64"] {
        lab.addr(node, "veth-pod", a);
    }
    for a in ["10.20.0.5/24", "fd00:20::5/64"] {
        lab.addr(pod, "eth0", a);
    }
    for via in ["10.20.0.1", "fd00:20::1"] {
        lab.route(pod, &["add", "default", "via", via]);
    }
    oam
}

/// [`oam_lab`] without the pod's link: the pod namespace is empty, for a
/// primary plugin to wire.
fn oam_uplink(tag: &str) -> OamLab {
    let lab = Lab::new(tag);
    let node = lab.router("node");
    let pod = lab.netns("pod");
    let rtr = lab.router("rtr");
    let client = lab.netns("client");
    lab.veth(&node, "up0", &rtr, "eth0");
    lab.veth(&rtr, "eth1", &client, "eth0");
    for (ns, dev, a) in [
        (&node, "up0", "10.30.0.1/24"),
        (&node, "up0", "fd00:30::1/64"),
        (&rtr, "eth0", "10.30.0.2/24"),
        (&rtr, "eth0", "fd00:30::2/64"),
        (&rtr, "eth1", "10.40.0.1/24"),
        (&rtr, "eth1", "fd00:40::1/64"),
        (&client, "eth0", "10.40.0.5/24"),
        (&client, "eth0", "fd00:40::5/64"),
    ] {
        lab.addr(ns, dev, a);
    }
    for via in ["10.40.0.1", "fd00:40::1"] {
        lab.route(&client, &["add", "default", "via", via]);
    }
    OamLab {
        lab,
        node,
        pod,
        rtr,
        client,
    }
}

/// gwsteer's config for the OaM lab: pod traffic steered into the VRF by
/// the host leg, the VRF with uplink `up0` and routes to the client's
/// network; `vrf_extra` is merged into the `vrf` section.
fn oam_config(lab: &Lab, pod: &str, vrf_extra: Value) -> Value {
    let mut vrf = json!({
        "uplinks": ["up0"],
        "gateways": [{"via": "10.30.0.2"}, {"via": "fd00:30::2"}],
        "destinations": ["10.40.0.0/24", "fd00:40::/64"]
    });
    if let Value::Object(extra) = vrf_extra {
        for (k, v) in extra {
            vrf[k] = v;
        }
    }
    json!({
        "cniVersion": "1.1.0",
        "name": "oam-net",
        "type": "gwsteer",
        "stateDir": lab.tmpdir().join("state"),
        "logFile": lab.tmpdir().join("gwsteer.log"),
        "logLevel": "debug",
        "steering": [{
            "name": "oam",
            "table": 100,
            "gateways": [
                {"via": "192.169.1.2", "dev": "gl-host"},
                {"via": "fd00:169::2", "dev": "gl-host"}
            ]
        }],
        "vrf": vrf_section(vrf),
        "prevResult": {
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "veth-pod", "mac": "02:00:00:00:01:01"},
                {"name": "eth0", "mac": "02:00:00:00:02:02", "sandbox": netns_path(pod)}
            ],
            "ips": [
                {"address": "10.20.0.5/24", "gateway": "10.20.0.1", "interface": 1},
                {"address": "fd00:20::5/64", "gateway": "fd00:20::1", "interface": 1}
            ]
        }
    })
}

/// One CNI call for the OaM lab's pod.
fn oam_call(node: &str, pod: &str, config: &Value, command: &str) -> CniOutcome {
    let c = CniCall::new(command, "pod1", "eth0", config.clone())
        .netns(&netns_path(pod))
        .cni_args(&k8s_cni_args("oam", "pod1", "pod1"));
    invoke(node, &gwsteer_bin(), &c)
}

/// End to end, both families: an OaM client behind an OaM router reaches a
/// pod through an uplink that gwsteer enslaves to the VRF. The node's main
/// table has no route to the client, so without gwsteer the pod's replies
/// go nowhere; with gwsteer (VRF, legs, the uplink moved in with its
/// addresses and routes, the pod's leak in table 10, a `source` policy
/// whose gateway is the VRF leg's address) they go back through the VRF to
/// the router. After DEL they fail again; `gwsteer cleanup` returns the
/// uplink to the default VRF with its addresses and routes.
///
/// ```text
///  client 10.40.0.5 ── rtr 10.40.0.1 | 10.30.0.2 ── up0 10.30.0.1 [enslaved to vrf-oam, table 10]
///  pod eth0 10.20.0.5 ── veth-pod 10.20.0.1 [node, default VRF]
///  gl-host 192.169.1.1 ═ gl-vrf 192.169.1.2 (enslaved)          (IPv6 alike)
/// ```
#[test]
fn oam_client_reaches_a_pod_through_the_vrf() {
    if !in_vrf_guest("oam_client_reaches_a_pod_through_the_vrf") {
        return;
    }
    const T: Duration = Duration::from_secs(8);
    let OamLab {
        lab,
        node,
        pod,
        rtr,
        client,
    } = oam_lab("vrfe2e");
    // The uplink in the default VRF with a static route through it, and a
    // router that routes back to the pods.
    lab.route(&rtr, &["add", "10.20.0.0/24", "via", "10.30.0.1"]);
    lab.route(&rtr, &["add", "fd00:20::/64", "via", "fd00:30::1"]);
    lab.route(&node, &["add", "10.50.0.0/24", "via", "10.30.0.2"]);
    lab.route(&node, &["add", "fd00:50::/64", "via", "fd00:30::2"]);
    let up0_addrs = || {
        let a = ip_json(&node, &["addr", "show", "dev", "up0"]);
        let mut v: Vec<String> = a[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["local"].as_str())
            .filter(|x| !x.starts_with("fe80"))
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let statics = |table: &str| {
        let mut v: Vec<String> = [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|f| routes(&node, f, table))
            .filter(|r| r["dst"] == "10.50.0.0/24" || r["dst"] == "fd00:50::/64")
            .map(|r| format!("{} via {}", r["dst"], r["gateway"]))
            .collect();
        v.sort();
        v
    };
    let addrs_before = up0_addrs();
    let statics_before = statics("main");
    assert_eq!(statics_before.len(), 2);

    let state = lab.tmpdir().join("state");
    let config = oam_config(&lab, &pod, json!({}));
    let call = |command: &str| oam_call(&node, &pod, &config, command);
    let reaches = |dst: &str| ping(&client, dst, None, false);

    assert!(
        !reaches("10.20.0.5"),
        "client reached the pod before gwsteer"
    );
    assert!(
        !reaches("fd00:20::5"),
        "client reached the pod (v6) before gwsteer"
    );

    call("ADD").expect_ok("ADD");
    assert_eq!(link(&node, "up0").unwrap()["master"], "vrf-oam");
    assert_eq!(
        up0_addrs(),
        addrs_before,
        "up0 keeps its addresses in the VRF"
    );
    assert_eq!(
        statics("10"),
        statics_before,
        "up0's routes move to table 10"
    );
    assert!(statics("main").is_empty());
    wait_for("client -> pod over the VRF (IPv4)", T, || {
        reaches("10.20.0.5")
    });
    wait_for("client -> pod over the VRF (IPv6)", T, || {
        reaches("fd00:20::5")
    });
    assert!(ping(&pod, "10.40.0.5", None, false), "pod -> client (IPv4)");
    assert!(
        ping(&pod, "fd00:40::5", None, false),
        "pod -> client (IPv6)"
    );
    call("CHECK").expect_ok("CHECK");

    // Drift: the uplink taken out of the VRF by hand. Leaving the VRF cycles
    // the link, so it comes back without its IPv6 address. CHECK names it;
    // reconcile enslaves it again and gives back what the group saved of it:
    // its addresses and its routes, in the VRF's table.
    lab.ip(&node, ["link", "set", "up0", "nomaster"]);
    let out = call("CHECK");
    assert!(
        out.expect_error("CHECK with the uplink out of the VRF") == 101
            && out.error_msg().is_some_and(|m| m.contains("up0")),
        "{out}"
    );
    let out = gwsteer_cli(
        &node,
        &[
            "reconcile",
            "--once",
            "--state-dir",
            &state.display().to_string(),
        ],
    );
    // Exit 1: it found something to fix.
    assert!(
        out.exit_code == 1 && out.stdout_raw.contains("repaired drifted uplink up0"),
        "reconcile:\n{out}"
    );
    assert_eq!(link(&node, "up0").unwrap()["master"], "vrf-oam");
    assert_eq!(up0_addrs(), addrs_before, "up0's addresses after reconcile");
    assert_eq!(
        statics("10"),
        statics_before,
        "up0's routes after reconcile"
    );
    wait_for(
        "client -> pod over the VRF after reconcile (IPv6)",
        T,
        || reaches("fd00:20::5"),
    );
    call("CHECK").expect_ok("CHECK after reconcile");

    call("DEL").expect_ok("DEL");
    assert!(
        !reaches("10.20.0.5"),
        "client still reaches the pod after DEL"
    );
    assert!(
        !reaches("fd00:20::5"),
        "client still reaches the pod (v6) after DEL"
    );

    let state = state.display().to_string();
    let out = gwsteer_cli(&node, &["cleanup", "--state-dir", &state]);
    assert!(out.success(), "cleanup:\n{out}");
    assert!(link(&node, "gl-host").is_none(), "legs left after cleanup");
    assert!(link(&node, "vrf-oam").is_none(), "VRF left after cleanup");
    let up0 = link(&node, "up0").expect("up0 stays");
    assert!(up0.get("master").is_none(), "{up0}");
    assert_eq!(up0_addrs(), addrs_before, "up0 gets its addresses back");
    assert_eq!(
        statics("main"),
        statics_before,
        "up0's routes go back to main"
    );
}

/// The same path with the pod made by the reference `bridge` + `host-local`
/// plugins and gwsteer chained after them (libcni-style conflist run), both
/// families: before gwsteer no answer, with it the client reaches the pod,
/// after the conflist's DEL it fails again; cleanup gives the uplink back.
#[test]
fn oam_client_reaches_a_bridge_pod_through_the_vrf() {
    if !in_vrf_guest("oam_client_reaches_a_bridge_pod_through_the_vrf") {
        return;
    }
    const T: Duration = Duration::from_secs(10);
    let OamLab {
        lab,
        node,
        pod,
        rtr,
        client,
    } = oam_uplink("vrfbr");
    lab.route(&rtr, &["add", "10.20.0.0/24", "via", "10.30.0.1"]);
    lab.route(&rtr, &["add", "fd00:20::/64", "via", "fd00:30::1"]);

    let state = lab.tmpdir().join("state");
    let gwsteer = gwsteer_plugin(
        &state,
        json!({
            "logFile": lab.tmpdir().join("gwsteer.log"),
            "logLevel": "debug",
            "steering": [{
                "name": "oam",
                "table": 100,
                "gateways": [
                    {"via": "192.169.1.2", "dev": "gl-host"},
                    {"via": "fd00:169::2", "dev": "gl-host"}
                ],
                "exclude": ["10.20.0.0/24", "fd00:20::/64"]
            }],
            "vrf": vrf_section(json!({
                "uplinks": ["up0"],
                "gateways": [{"via": "10.30.0.2"}, {"via": "fd00:30::2"}],
                "destinations": ["10.40.0.0/24", "fd00:40::/64"]
            }))
        }),
    );
    let conflist = bridge_conflist(
        "oam-br",
        "1.1.0",
        "cni0",
        &["10.20.0.0/24", "fd00:20::/64"],
        &lab.tmpdir().join("ipam"),
        gwsteer,
    );
    let args = k8s_cni_args("oam", "pod1", "pod1");
    let result = conflist_add(
        &node,
        &conflist,
        "pod1",
        &netns_path(&pod),
        "eth0",
        Some(&args),
    )
    .unwrap_or_else(|o| panic!("conflist ADD:\n{o}"));
    let ips = pod_ips(&result);
    assert_eq!(ips.len(), 2, "{result}");
    wait_no_tentative(&pod, T);
    wait_no_tentative(&node, T);
    for ip in &ips {
        wait_for(
            &format!("client -> bridge pod {ip} over the VRF"),
            T,
            || ping(&client, ip, None, false),
        );
    }
    assert_eq!(link(&node, "up0").unwrap()["master"], "vrf-oam");

    conflist_del(
        &node,
        &conflist,
        "pod1",
        Some(&netns_path(&pod)),
        "eth0",
        Some(&args),
        Some(&result),
    )
    .unwrap_or_else(|o| panic!("conflist DEL:\n{o}"));
    // The pod's leak and source rule are gone: the replies have no way back.
    // (The bridge's DEL removed the pod's interface; re-make an address so
    // that only gwsteer's absence can explain the silence.)
    lab.veth(&node, "vethre", &pod, "eth0");
    lab.ip(&node, ["link", "set", "dev", "vethre", "master", "cni0"]);
    lab.addr(&pod, "eth0", &format!("{}/24", ips[0]));
    lab.route(&pod, &["add", "default", "via", "10.20.0.1"]);
    assert!(
        !ping(&client, &ips[0], None, false),
        "client still reaches the pod address after DEL"
    );

    let state = state.display().to_string();
    let out = gwsteer_cli(&node, &["cleanup", "--state-dir", &state]);
    assert!(out.success(), "cleanup:\n{out}");
    assert!(link(&node, "vrf-oam").is_none());
    let up0 = link(&node, "up0").expect("up0 stays");
    assert!(up0.get("master").is_none(), "{up0}");
}

/// `masquerade: true`, both families: the router has no route back to the
/// pods, so the pod reaches the client only if its traffic leaves the
/// uplink masqueraded to the uplink's address. Without the masquerade
/// group (after the last DEL) it fails; the conntrack zones keep the
/// pod's connection apart from its second pass through the VRF leg.
#[test]
fn vrf_masquerade_hides_pods_behind_the_uplink_address() {
    if !in_vrf_guest("vrf_masquerade_hides_pods_behind_the_uplink_address") {
        return;
    }
    const T: Duration = Duration::from_secs(8);
    let OamLab {
        lab,
        node,
        pod,
        rtr: _,
        client: _,
    } = oam_lab("vrfmasq");
    // No route on the router back to 10.20.0.0/24 or fd00:20::/64.

    let state = lab.tmpdir().join("state");
    let mut config = oam_config(&lab, &pod, json!({"masquerade": true}));
    config["firewallBackend"] = json!("nftables");
    let call_with = |config: &Value, command: &str| oam_call(&node, &pod, config, command);
    // The same VRF without masquerade first: the router cannot answer.
    let mut plain = config.clone();
    plain["vrf"]["masquerade"] = json!(false);
    call_with(&plain, "ADD").expect_ok("ADD without masquerade");
    assert!(
        !ping(&pod, "10.40.0.5", None, false),
        "pod reached the client without masquerade"
    );
    call_with(&config, "ADD").expect_ok("ADD");
    wait_for("pod -> client, masqueraded (IPv4)", T, || {
        ping(&pod, "10.40.0.5", None, false)
    });
    wait_for("pod -> client, masqueraded (IPv6)", T, || {
        ping(&pod, "fd00:40::5", None, false)
    });
    call_with(&config, "CHECK").expect_ok("CHECK");
    let ruleset = exec_in(
        &node,
        "nft",
        ["list", "table", "inet", "gwsteer-vrf-vrf-oam"],
    );
    assert!(ruleset.contains("masquerade"), "{ruleset}");

    call_with(&config, "DEL").expect_ok("DEL");
    assert!(
        try_exec_in(
            &node,
            "nft",
            ["list", "table", "inet", "gwsteer-vrf-vrf-oam"]
        )
        .is_err(),
        "the masquerade table outlived the last pod"
    );
    let out = gwsteer_cli(
        &node,
        &["cleanup", "--state-dir", &state.display().to_string()],
    );
    assert!(out.success(), "cleanup:\n{out}");
    assert!(link(&node, "vrf-oam").is_none());
}

/// The node's rules, routes and nftables ruleset, for a failure message.
fn node_dump(ns: &str) -> String {
    [
        vec!["ip", "-d", "link", "show"],
        vec!["ip", "-4", "rule"],
        vec!["ip", "-6", "rule"],
        vec!["ip", "-4", "route", "show", "table", "all"],
        vec!["ip", "-6", "route", "show", "table", "all"],
        vec!["nft", "list", "ruleset"],
    ]
    .into_iter()
    .map(|argv| {
        let out = try_exec_in(ns, argv[0], &argv[1..]).unwrap_or_else(|e| e.to_string());
        format!("$ {}\n{out}", argv.join(" "))
    })
    .collect::<Vec<_>>()
    .join("\n")
}

/// Rules and routes of a [`snapshot`], each list sorted (a route that
/// cleanup puts back may be listed in another place), and without the kernel's l3mdev rule,
/// which the kernel adds with the netns' first VRF device and never removes.
fn settled(mut snap: Value) -> Value {
    for kind in ["rules", "routes"] {
        for family in ["4", "6"] {
            if let Some(list) = snap[kind][family].as_array_mut() {
                list.retain(|r| r.get("l3mdev").is_none());
                list.sort_by_key(|r| r.to_string());
            }
        }
    }
    snap
}

/// conflist-examples/80-bridge-vrf-egress.conflist, as it is, through
/// Debian's libcni (the host only sees it refused: no VRF there;
/// tests/it/examples_libcni.rs checks that this test exists). The node is the
/// examples' (eth0 with the default route, eth1 towards the OaM router at
/// 192.168.2.1); behind the router an OaM server, and the router has no route
/// to the pods, so only masqueraded traffic can be answered.
///
/// ```text
///  pod (ns oam) ──┐            node                                     rtr            srv
///  other (default)┴ cni0 ─ main table ─ eth0 10.0.0.11 ─ up 10.0.0.1
///                   └ rule 1000 from <pod> lookup 100 ─ oam-host ═ oam-vrf [vrf-oam, table 10]
///                                          eth1 192.168.2.2 [vrf-oam] ─ 192.168.2.1 | 172.30.0.1 ─ 172.30.0.5
/// ```
///
/// Without gwsteer (the bridge alone) the pod gets no answer from the
/// server. With the example: eth1 is in the VRF, the node itself no longer
/// routes to the OaM network, the oam pod reaches the server (IPv4 and IPv6,
/// ping and TCP) as the uplink's address, the other pod does not; libcni's
/// CHECK passes. After DEL the pod's address gets no answer again, and after
/// the last DEL and `gwsteer cleanup` the node's rules, routes and nftables
/// ruleset are what the bridge alone left.
#[test]
fn example_80_bridge_vrf_egress_through_libcni() {
    if !in_vrf_guest("example_80_bridge_vrf_egress_through_libcni") {
        return;
    }
    const T: Duration = Duration::from_secs(10);
    const FILE: &str = "80-bridge-vrf-egress.conflist";
    let lab = Lab::new("vrfex80");
    let (node, rtr) = example_node(
        &lab,
        &["192.168.2.2/24", "fd00:2::2/64"],
        &["192.168.2.1/24", "fd00:2::1/64"],
    );
    lab.sysctls(
        &rtr,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    );
    let srv = lab.netns("srv");
    lab.veth(&rtr, "eth1", &srv, "eth0");
    lab.addr(&rtr, "eth1", "172.30.0.1/24");
    lab.addr(&rtr, "eth1", "fd00:172:30::1/64");
    lab.addr(&srv, "eth0", "172.30.0.5/24");
    lab.addr(&srv, "eth0", "fd00:172:30::5/64");
    lab.route(&srv, &["add", "default", "via", "172.30.0.1"]);
    lab.route(&srv, &["add", "default", "via", "fd00:172:30::1"]);
    let v4 = TcpServer::start(&srv, "172.30.0.5:0".parse().unwrap());
    let v6 = TcpServer::start(&srv, "[fd00:172:30::5]:0".parse().unwrap());
    let servers = [("172.30.0.5", v4.addr()), ("fd00:172:30::5", v6.addr())];
    let reaches = |ns: &str| {
        servers
            .iter()
            .map(|(ip, _)| ping(ns, ip, None, false))
            .collect::<Vec<bool>>()
    };

    let pod = lab.netns("pod");
    let other = lab.netns("other");
    let oam_args = k8s_cni_args("oam", "egress-0", "c1");
    let other_args = k8s_cni_args("default", "web-0", "c2");
    let eth1_before = addrs(&node, "eth1");

    // The bridge alone: the pod's traffic to the server leaves by the
    // default route on eth0 and gets no answer.
    let conf = load(FILE);
    let mut bare = conf.clone();
    bare["plugins"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["type"] != "gwsteer");
    assert_eq!(bare["plugins"].as_array().unwrap().len(), 1, "{bare}");
    let bare = Run::new(&lab, &node, &bare, "80-bridge-only.conflist");
    bare.add_check(&pod, "c0", "eth0", &oam_args);
    wait_no_tentative(&pod, T);
    assert_eq!(
        reaches(&pod),
        [false, false],
        "the pod reached the OaM server with the bridge alone"
    );
    bare.del(&pod, "c0", "eth0", &oam_args);
    let before = settled(snapshot(&node));

    // The example.
    let run = Run::new(&lab, &node, &conf, FILE);
    let result = run.add_check(&pod, "c1", "eth0", &oam_args);
    let other_result = run.add_check(&other, "c2", "eth0", &other_args);
    let ips = pod_ips(&result);
    assert_eq!(ips.len(), 2, "{result}");
    wait_no_tentative(&pod, T);
    wait_no_tentative(&other, T);
    wait_no_tentative(&node, T);

    assert_eq!(link(&node, "eth1").unwrap()["master"], "vrf-oam");
    assert_eq!(
        addrs(&node, "eth1"),
        eth1_before,
        "eth1 keeps its addresses"
    );
    let leg = link(&node, "oam-vrf").expect("the VRF leg");
    assert_eq!(leg["master"], "vrf-oam", "{leg}");
    // The node's own traffic no longer sees the OaM network.
    let got = ip_json(&node, &["route", "get", "172.30.0.5"]);
    assert_eq!(got[0]["dev"], "eth0", "{got}");
    let mut want = vec![
        (
            "default".to_string(),
            "192.168.2.1".to_string(),
            "eth1".to_string(),
            String::new(),
        ),
        (
            "default".to_string(),
            "fd00:2::1".to_string(),
            "eth1".to_string(),
            String::new(),
        ),
    ];
    want.extend(unreachables());
    // The leaks: the oam pod's addresses, back through the host leg.
    for ip in &ips {
        let host_leg = if ip.contains(':') {
            "fd00:a9fe:100::1"
        } else {
            "169.254.100.1"
        };
        want.push((
            ip.clone(),
            host_leg.to_string(),
            "oam-vrf".to_string(),
            String::new(),
        ));
    }
    want.sort();
    assert_eq!(table_routes(&node, 10), want, "the VRF table");

    // The oam pod reaches the server through the VRF, as the uplink's address.
    for (ip, _) in &servers {
        assert!(
            eventually(T, || ping(&pod, ip, None, false)),
            "oam pod -> {ip} through the VRF: no answer in {T:?}; the node:\n{}",
            node_dump(&node)
        );
    }
    for ((ip, addr), uplink) in servers.iter().zip(["192.168.2.2", "fd00:2::2"]) {
        let pong = tcp_pong(&pod, *addr, T).unwrap_or_else(|e| panic!("oam pod -> {ip}: {e}"));
        assert_eq!(
            pong.peer.to_string(),
            uplink,
            "masqueraded to the uplink's address"
        );
    }
    let explain = gwsteer_cli(
        &node,
        &[
            "explain",
            "172.30.0.5",
            "--from",
            &ips[0],
            "--iif",
            "cni0",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(explain.stdout_raw.trim())
        .unwrap_or_else(|e| panic!("{e}: {explain}"));
    assert_eq!(v["table"], 100, "{v}");
    assert_eq!(v["chosen"]["dev"], "oam-host", "{v}");
    // The other namespace's pod is not steered.
    assert_eq!(
        reaches(&other),
        [false, false],
        "a pod outside namespace oam reached the OaM server: {other_result}"
    );
    for (ip, addr) in &servers {
        assert!(
            tcp_pong(&other, *addr, Duration::from_secs(2)).is_err(),
            "a pod outside namespace oam reached {ip} over TCP"
        );
    }
    run.op("check", &pod, "c1", "eth0", &oam_args)
        .expect_ok("libcni CHECK c1 after the traffic");

    // After DEL the pod's address has no way out any more: re-made on cni0
    // (the bridge's DEL removed the interface), it gets no answer.
    run.del(&pod, "c1", "eth0", &oam_args);
    lab.veth(&node, "vethre", &pod, "eth0");
    lab.ip(&node, ["link", "set", "dev", "vethre", "master", "cni0"]);
    lab.addr(&pod, "eth0", &format!("{}/24", ips[0]));
    lab.addr(&pod, "eth0", &format!("{}/64", ips[1]));
    lab.route(&pod, &["add", "default", "via", "10.244.1.1"]);
    lab.route(&pod, &["add", "default", "via", "fd00:244:0:1::1"]);
    wait_no_tentative(&pod, T);
    assert!(
        eventually(T, || ping(&pod, "10.244.1.1", None, false)),
        "the re-made pod address reaches its bridge"
    );
    assert_eq!(
        reaches(&pod),
        [false, false],
        "the pod's address still reaches the OaM server after DEL"
    );
    lab.ip(&node, ["link", "del", "dev", "vethre"]);

    run.del(&other, "c2", "eth0", &other_args);
    run.assert_clean();
    let state = run.state_dir().display().to_string();
    let out = gwsteer_cli(&node, &["cleanup", "--state-dir", &state]);
    assert!(out.success(), "cleanup:\n{out}");
    for dev in ["vrf-oam", "oam-host", "oam-vrf"] {
        assert!(link(&node, dev).is_none(), "{dev} left after cleanup");
    }
    let eth1 = link(&node, "eth1").expect("eth1 stays");
    assert!(eth1.get("master").is_none(), "{eth1}");
    assert_eq!(
        addrs(&node, "eth1"),
        eth1_before,
        "eth1 gets its addresses back"
    );
    assert_same_state(
        "after the example's DEL and cleanup, against the bridge alone",
        &before,
        &settled(snapshot(&node)),
    );
}

/// The nftables backend on Debian 12's kernel (6.1: no element timeout
/// updates, so a pod's element is deleted, not expired): a `connmark`
/// policy and the masquerade exemption made by netlink batches on the first
/// ADD, each pod's address in the member set, CHECK clean, the first pod's
/// DEL takes its element only, the last one's the table.
/// On Debian 12's 6.1 too, closing an nf_tables socket after a deleting
/// commit does not wait for the kernel to free what it deleted when the
/// socket's release is handed to the kernel (as gwsteer's is), and the
/// kernel does release it (`support::nfclose`).
#[test]
fn closing_after_a_deletion_does_not_wait_on_the_guest_kernel() {
    if !in_vrf_guest("closing_after_a_deletion_does_not_wait_on_the_guest_kernel") {
        return;
    }
    let node = Node::new("vrfclose");
    support::nfclose::assert_close_after_delete_does_not_wait(&node.ns);
}

#[test]
fn nftables_backend_works_on_the_guest_kernel() {
    if !in_vrf_guest("nftables_backend_works_on_the_guest_kernel") {
        return;
    }
    let node = Node::new("vrfnft");
    let mut config = node.config("nftg", support::reliability::connmark_lb());
    config["firewallBackend"] = json!("nftables");
    config["masqueradeExemption"] = json!(true);
    let a = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    let b = prev_result("10.244.1", "fd00:244:0:1", 6, &node.pod_netns);
    node.add("c1", &config, &a).expect_ok("ADD c1");
    node.add("c2", &config, &b).expect_ok("ADD c2");
    node.check("c1", &config, &a).expect_ok("CHECK c1");
    let members = |family: &str| -> Vec<String> {
        let out = exec_in(
            &node.ns,
            "nft",
            [
                "-j",
                "list",
                "set",
                "inet",
                "gwsteer-nftg",
                &format!("lb_{family}"),
            ],
        );
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let mut elems: Vec<String> = v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("set"))
            .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect();
        elems.sort();
        elems
    };
    assert_eq!(members("v4"), ["10.244.1.5", "10.244.1.6"]);
    assert_eq!(members("v6"), ["fd00:244:0:1::5", "fd00:244:0:1::6"]);
    let chains = exec_in(&node.ns, "nft", ["list", "table", "inet", "gwsteer-nftg"]);
    assert!(
        chains.contains("chain lb_in") && chains.contains("chain masq_exempt_"),
        "{chains}"
    );
    node.del("c1", &config, &a).expect_ok("DEL c1");
    assert_eq!(members("v4"), ["10.244.1.6"]);
    assert_eq!(members("v6"), ["fd00:244:0:1::6"]);
    node.del("c2", &config, &b).expect_ok("DEL c2");
    let tables = exec_in(&node.ns, "nft", ["list", "tables"]);
    assert!(!tables.contains("gwsteer-"), "{tables}");
}
