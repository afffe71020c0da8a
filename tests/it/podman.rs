//! Debian's podman as the container runtime (its CNI backend, runc), in a
//! node namespace of the asymmetric topology: a kindnet-like primary
//! (ptp + host-local + portmap) chained with gwsteer in the runtime's own
//! conf dir; a container is a pod whose replies to client B are steered.

use std::path::Path;

use crate::support::asym::*;
use crate::support::podman::Podman;
use crate::support::*;
use serde_json::{Value, json};

const NETWORK: &str = "kindnet";

/// kindnet's conflist as it writes it (ptp + host-local + portmap), with
/// gwsteer chained (`gwsteer` not null) or not.
fn kindnet(lab: &Lab, gwsteer: Value) -> Value {
    let mut plugins = vec![
        json!({"type": "ptp", "ipMasq": false, "mtu": 1500,
               "ipam": {"type": "host-local", "dataDir": lab.subdir("ipam"),
                        "ranges": [[{"subnet": POD_V4}]], "routes": [{"dst": "0.0.0.0/0"}]}}),
        json!({"type": "portmap", "capabilities": {"portMappings": true}}),
    ];
    if !gwsteer.is_null() {
        plugins.push(gwsteer);
    }
    json!({"cniVersion": "0.4.0", "name": NETWORK, "plugins": plugins})
}

fn oam(lab: &Lab) -> Value {
    gwsteer_plugin(
        &state_dir(lab),
        json!({"logFile": lab.tmpdir().join("gwsteer.log"),
               "steering": [{"name": "oam", "table": 100,
                             "gateways": [{"via": RTR_B_V4, "dev": "eth-b"}],
                             "exclude": [CLUSTER_V4]}]}),
    )
}

/// A pod: busybox answering one line on :8080, forever.
fn start_pod(pm: &Podman, name: &str) -> String {
    pm.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        NETWORK,
        "--ulimit",
        "host",
        "localhost/busybox:test",
        "nc",
        "-ll",
        "-p",
        "8080",
        "-e",
        "echo",
        "hello",
    ]);
    pm.ip_of(name, NETWORK)
}

fn answered(cli: &str, ip: &str) -> bool {
    let to = std::net::SocketAddr::new(ip.parse().unwrap(), 8080);
    tcp_request(cli, to, FAIL * 2).is_ok_and(|s| s.contains("hello"))
}

#[test]
fn a_podman_pod_on_a_kindnet_like_primary_is_steered() {
    let lab = Lab::new("podman");
    let t = Topo::build(&lab);
    let conf_dir = lab.subdir("net.d");
    let bin = gwsteer_bin();
    let pm = Podman::new(
        &lab,
        &t.node,
        &conf_dir,
        &[bin.parent().unwrap(), Path::new(REFERENCE_PLUGIN_DIR)],
    );
    pm.import_busybox(&lab, "localhost/busybox:test");

    // The primary alone: client B gets nothing.
    write_json(
        &conf_dir.join("10-kindnet.conflist"),
        &kindnet(&lab, Value::Null),
    );
    let ip = start_pod(&pm, "plain");
    assert!(!answered(&t.clib, &ip), "client B answered without gwsteer");
    pm.ok(&["rm", "-f", "-t", "0", "plain"]);

    // gwsteer chained: answered, and DEL (podman rm) leaves nothing.
    write_json(
        &conf_dir.join("10-kindnet.conflist"),
        &kindnet(&lab, oam(&lab)),
    );
    let ip = start_pod(&pm, "steered");
    assert!(answered(&t.clib, &ip), "client B not answered with gwsteer");
    assert!(
        gw_rules(&t.node)
            .iter()
            .any(|r| r.contains(&format!("from {ip} lookup 100"))),
        "{:?}",
        gw_rules(&t.node)
    );
    pm.ok(&["rm", "-f", "-t", "0", "steered"]);
    assert!(gw_rules(&t.node).is_empty(), "{:?}", gw_rules(&t.node));
}
