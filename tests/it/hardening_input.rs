//! Hostile names and values, end to end: every name has a limit checked when
//! it arrives, DEL of a name past a limit succeeds (nothing can have been
//! recorded for it), names reach nft only as JSON, and sysctls gwsteer
//! writes are only the ones it ever plans.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::gwnet::*;
use crate::support::*;
use serde_json::{Value, json};

/// A source-steering config of network `name` for a pod at 10.244.1.5.
fn source_config(name: &str, state: &Path, pod: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "gwsteer",
        "stateDir": state,
        "steering": [{
            "name": "oam",
            "table": 100,
            "gateways": [{"via": "192.0.2.254"}]
        }],
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": pod}],
            "ips": [{"address": "10.244.1.5/24", "interface": 0}]
        }
    })
}

/// gwsteer's rules (routing protocol 211) in `ns`.
fn gw_rules(ns: &str) -> Vec<Value> {
    rules(ns, Family::V4)
        .into_iter()
        .filter(|r| matches!(r["protocol"].as_str(), Some("211" | "gwsteer")))
        .collect()
}

/// Every entry under `dir`, recursively.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path().display().to_string());
            out.extend(tree(&e.path()));
        }
    }
    out
}

/// A name at each limit works (ADD steers, DEL removes); one past it is
/// refused by ADD and CHECK with the limit named, and DEL of it succeeds
/// without leaving anything in the state directory.
#[test]
fn names_at_their_limits_work_and_del_past_them_succeeds() {
    let lab = Lab::new("hinames");
    let node = uplink_node(&lab);
    let pod = netns_path(&lab.netns("pod"));
    let state = lab.tmpdir().join("state");

    // At the limits: a 200-byte network name, a 200-byte container id.
    let net200 = "n".repeat(200);
    let id200 = "c".repeat(200);
    let conf = source_config(&net200, &state, &pod);
    let add = CniCall::new("ADD", &id200, "eth0", conf.clone()).netns(&pod);
    invoke(&node, &gwsteer_bin(), &add).expect_ok("ADD at the limits");
    assert_eq!(gw_rules(&node).len(), 1, "{:?}", gw_rules(&node));
    let mut check = add.clone();
    check.command = "CHECK".into();
    invoke(&node, &gwsteer_bin(), &check).expect_ok("CHECK at the limits");
    let mut del = add.clone();
    del.command = "DEL".into();
    invoke(&node, &gwsteer_bin(), &del).expect_ok("DEL at the limits");
    assert!(gw_rules(&node).is_empty(), "{:?}", gw_rules(&node));

    // Past them: (network name, container id, ifname, code of ADD, message).
    let past: [(String, String, &str, u64, &str); 5] = [
        (
            "n".repeat(201),
            "c1".into(),
            "eth0",
            7,
            "name: the network name is 201 bytes long; the limit is 200",
        ),
        (
            "n".repeat(300),
            "c1".into(),
            "eth0",
            7,
            "name: the network name is 300 bytes long; the limit is 200",
        ),
        (
            "net".into(),
            "c".repeat(201),
            "eth0",
            4,
            "CNI_CONTAINERID: the container id is 201 bytes long; the limit is 200",
        ),
        (
            "net".into(),
            "c".repeat(250),
            "eth0",
            4,
            "CNI_CONTAINERID: the container id is 250 bytes long; the limit is 200",
        ),
        (
            "net".into(),
            "c1".into(),
            "eth0123456789abc",
            4,
            "CNI_IFNAME: \"eth0123456789abc\" is not a valid interface name: is 16 bytes long",
        ),
    ];
    let before = tree(&state);
    let mut failures = Vec::new();
    for (net, id, ifname, code, msg) in &past {
        let conf = source_config(net, &state, &pod);
        let what = format!(
            "network {} bytes, id {} bytes, ifname {ifname}",
            net.len(),
            id.len()
        );
        for verb in ["ADD", "CHECK"] {
            let call = CniCall::new(verb, id, ifname, conf.clone()).netns(&pod);
            let out = invoke(&node, &gwsteer_bin(), &call);
            if out.error_code() != Some(*code) || !out.error_msg().is_some_and(|m| m.contains(msg))
            {
                failures.push(format!("{verb} {what}: want {code} {msg:?}\n{out}"));
            }
        }
        // DEL, with the netns and without (the runtime may have lost it),
        // and with a config that does not validate otherwise either.
        let mut broken = conf.clone();
        broken["steering"][0]["table"] = json!(254);
        for (conf, netns) in [(&conf, true), (&conf, false), (&broken, true)] {
            let mut call = CniCall::new("DEL", id, ifname, conf.clone());
            if netns {
                call = call.netns(&pod);
            }
            let out = invoke(&node, &gwsteer_bin(), &call);
            if !out.success() || !out.stdout_raw.trim().is_empty() {
                failures.push(format!("DEL {what} (netns {netns}): must succeed\n{out}"));
            }
        }
    }
    // A state dir past its limit (no path under it would fit PATH_MAX).
    let mut conf = source_config("net", &state, &pod);
    conf["stateDir"] = json!(format!("{}/{}", state.display(), "s".repeat(4000)));
    let add = CniCall::new("ADD", "c1", "eth0", conf.clone()).netns(&pod);
    let out = invoke(&node, &gwsteer_bin(), &add);
    if out.error_code() != Some(7)
        || !out
            .error_msg()
            .is_some_and(|m| m.contains("stateDir: the path is") && m.contains("the limit is 3072"))
    {
        failures.push(format!("ADD with a long stateDir\n{out}"));
    }
    let out = invoke(
        &node,
        &gwsteer_bin(),
        &CniCall::new("DEL", "c1", "eth0", conf),
    );
    if !out.success() {
        failures.push(format!("DEL with a long stateDir: must succeed\n{out}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(gw_rules(&node).is_empty(), "{:?}", gw_rules(&node));
    assert_eq!(
        tree(&state),
        before,
        "DEL past a limit wrote into the state dir"
    );
}

/// A router pod whose gateway interface is named `g"{}$` (legal in Linux;
/// nft's text syntax reads every one of those characters): ADD makes its
/// masquerade, a client's traffic leaves masqueraded through it, CHECK
/// passes, DEL removes the table. Then the client pod and, by name, the
/// router pod's table are gone.
#[test]
fn a_router_pod_interface_named_with_nft_syntax_masquerades_and_goes() {
    const IFNAME: &str = "g\"{}$";
    const ROUTER: &str = "192.168.60.254";
    const OUTSIDE: &str = "10.99.0.1";
    const ROUTER_ETH0: &str = "10.99.0.2";
    let lab = Lab::new("hirouter");
    let node = lab.netns("node");
    let (client, _dead) = pod_with_peer(
        &lab,
        ("client", &["10.98.0.2/24"]),
        ("client-dead", &["10.98.0.1/24"]),
        &["10.98.0.1"],
    );
    let (router, outside) = pod_with_peer(
        &lab,
        ("router", &[&format!("{ROUTER_ETH0}/24")]),
        ("outside", &[&format!("{OUTSIDE}/24")]),
        &[OUTSIDE],
    );
    let server = TcpServer::start(&outside, sock(OUTSIDE, 8080));
    let state = lab.subdir("state");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "hinet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "gwbr0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "192.168.60.0/24", "rangeStart": "192.168.60.2", "rangeEnd": ROUTER}]],
                    "dataDir": lab.subdir("ipam"),
                },
            },
            gwsteer_plugin(&state, json!({
                "logLevel": "debug",
                "gatewayNetwork": {"router": ROUTER, "masqueradeExemption": false},
            })),
        ],
    });
    let router_conf = as_router(&conf);
    let router_args = format!("{};IP={ROUTER}", k8s_cni_args("default", "router", "rtr"));
    let client_args = k8s_cni_args("default", "client", "cli");
    let (router_path, client_path) = (netns_path(&router), netns_path(&client));

    let r = conflist_add(
        &node,
        &router_conf,
        "rtr",
        &router_path,
        IFNAME,
        Some(&router_args),
    )
    .unwrap_or_else(|o| panic!("ADD of the router pod: {o}"));
    assert_eq!(link(&router, IFNAME)["ifname"], IFNAME);
    let table = format!("gwsteer-router-{IFNAME}");
    assert!(
        nft_tables(&router).contains(&table),
        "{:?}",
        nft_tables(&router)
    );
    conflist_check(
        &node,
        &router_conf,
        "rtr",
        &router_path,
        IFNAME,
        Some(&router_args),
        &r,
    )
    .unwrap_or_else(|o| panic!("CHECK of the router pod: {o}"));
    let c = conflist_add(
        &node,
        &conf,
        "cli",
        &client_path,
        "net1",
        Some(&client_args),
    )
    .unwrap_or_else(|o| panic!("ADD of the client pod: {o}"));
    let pong = tcp_pong(&client, server.addr(), Duration::from_secs(3))
        .expect("client to the outside through the router pod");
    assert_eq!(
        pong.peer,
        ROUTER_ETH0.parse::<IpAddr>().unwrap(),
        "the router pod masquerades"
    );

    conflist_del(
        &node,
        &conf,
        "cli",
        Some(&client_path),
        "net1",
        Some(&client_args),
        Some(&c),
    )
    .unwrap_or_else(|o| panic!("DEL of the client pod: {o}"));
    conflist_del(
        &node,
        &router_conf,
        "rtr",
        Some(&router_path),
        IFNAME,
        Some(&router_args),
        Some(&r),
    )
    .unwrap_or_else(|o| panic!("DEL of the router pod: {o}"));
    assert!(
        !nft_tables(&router).iter().any(|t| t.starts_with("gwsteer")),
        "{:?}",
        nft_tables(&router)
    );
    // A repeated DEL (the runtime retries) succeeds too.
    conflist_del(
        &node,
        &router_conf,
        "rtr",
        Some(&router_path),
        IFNAME,
        Some(&router_args),
        Some(&r),
    )
    .unwrap_or_else(|o| panic!("second DEL of the router pod: {o}"));
    let out = gwsteer_cli(&node, &["cleanup", "--state-dir", state.to_str().unwrap()]);
    assert!(out.success(), "cleanup: {out}");
    assert_nothing_left(&node, &state);
}

/// A forged node-group file (as anyone who can write in the state dir could
/// leave) names a sysctl gwsteer never plans — `net.ipv4.ip_default_ttl`,
/// a stand-in for `kernel.core_pattern` that lives in the lab's namespace —
/// held by a real attachment so that `reconcile` takes it for its own. The
/// round does not write it, and says so (exit 1, the key named).
#[test]
fn reconcile_writes_no_sysctl_that_gwsteer_does_not_plan() {
    let lab = Lab::new("hisysctl");
    let node = uplink_node(&lab);
    let pod = netns_path(&lab.netns("pod"));
    let state = lab.tmpdir().join("state");
    let conf = source_config("sysnet", &state, &pod);
    let add = CniCall::new("ADD", "c1", "eth0", conf).netns(&pod);
    invoke(&node, &gwsteer_bin(), &add).expect_ok("ADD");

    const KEY: &str = "net.ipv4.ip_default_ttl";
    let before = lab.read_sysctl(&node, KEY);
    assert_ne!(before, "7");
    let net = state.join("sysnet");
    let group = format!("sysctl.{KEY}");
    fs::write(
        net.join("nodes").join(format!("{group}.json")),
        json!({
            "schema": 2,
            "key": group,
            "objects": [{"object": "sysctl", "key": KEY, "value": "7"}]
        })
        .to_string(),
    )
    .unwrap();
    fs::create_dir_all(net.join("holds").join(&group)).unwrap();
    fs::write(net.join("holds").join(&group).join("c1@eth0"), "").unwrap();

    let state_arg = state.to_str().unwrap();
    let out = gwsteer_cli(&node, &["reconcile", "--once", "--state-dir", state_arg]);
    assert_eq!(
        lab.read_sysctl(&node, KEY),
        before,
        "the forged sysctl was written\n{out}"
    );
    assert_eq!(out.exit_code, 1, "{out}");
    let said = format!("{}{}", out.stdout_raw, out.stderr);
    assert!(
        said.contains(&format!("sysctl \"{KEY}\" is not one gwsteer sets")),
        "{out}"
    );
    // A second round still refuses it: nothing was "repaired" into place.
    let out = gwsteer_cli(&node, &["reconcile", "--once", "--state-dir", state_arg]);
    assert_eq!(out.exit_code, 1, "{out}");
    assert_eq!(lab.read_sysctl(&node, KEY), before);

    let mut del = add.clone();
    del.command = "DEL".into();
    invoke(&node, &gwsteer_bin(), &del).expect_ok("DEL");
    assert_eq!(lab.read_sysctl(&node, KEY), before);
}
