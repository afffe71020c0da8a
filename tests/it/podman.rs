//! Debian's podman as the container runtime (its CNI backend, runc), in a
//! node namespace of the asymmetric topology: a kindnet-like primary
//! (ptp + host-local + portmap) in the runtime's own conf dir; the node
//! image (install/Containerfile, FROM scratch) built by podman and its
//! install step run as a container with the conf and bin dirs mounted, as
//! the DaemonSet's init container runs it; a container is a pod whose
//! replies to client B are steered; uninstall and cleanup leave the conf
//! dir byte for byte as it was and nothing of gwsteer's in the kernel.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

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

/// The release binary the image is built from (tests/run-all.sh builds it).
fn release_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/gwsteer");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release first (tests/run-all.sh does)",
        bin.display()
    );
    bin
}

/// `gwsteer ARGS` as the image's container, the node's bin and conf dirs
/// and the plugin object mounted where the DaemonSet mounts them.
fn in_image(pm: &Podman, bin_dir: &Path, conf_dir: &Path, config: &Path, args: &[&str]) -> String {
    let mount = |host: &Path, at: &str| format!("{}:{at}", host.display());
    let mut all = vec![
        "run".to_string(),
        "--rm".into(),
        "--network".into(),
        "none".into(),
        "--ulimit".into(),
        "host".into(),
        "-e".into(),
        "CNI_BIN_DIR=/host/opt/cni/bin".into(),
        "-e".into(),
        "CNI_CONF_DIR=/host/etc/cni/net.d".into(),
        "-v".into(),
        mount(bin_dir, "/host/opt/cni/bin"),
        "-v".into(),
        mount(conf_dir, "/host/etc/cni/net.d"),
        "-v".into(),
        mount(config, "/config"),
        IMAGE.into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    pm.ok(&refs)
}

const IMAGE: &str = "localhost/gwsteer:test";

/// Every file of `dir` (not the installer's record) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_image_installs_gwsteer_for_podman_and_uninstalls_byte_for_byte() {
    let lab = Lab::new("pmimage");
    let t = Topo::build(&lab);
    let conf_dir = lab.subdir("net.d");
    let bin_dir = lab.subdir("cni-bin");
    let config = lab.subdir("config");
    // The primary's plugins in the node's bin dir, as on a node.
    for plugin in ["ptp", "host-local", "portmap"] {
        fs::copy(
            Path::new(REFERENCE_PLUGIN_DIR).join(plugin),
            bin_dir.join(plugin),
        )
        .unwrap();
    }
    let pm = Podman::new(&lab, &t.node, &conf_dir, &[&bin_dir]);
    pm.import_busybox(&lab, "localhost/busybox:test");
    // The image, as its Containerfile says: the release binary, FROM scratch.
    let context = lab.subdir("image");
    fs::create_dir_all(context.join("target/release")).unwrap();
    fs::copy(release_binary(), context.join("target/release/gwsteer")).unwrap();
    let containerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("install/Containerfile");
    pm.ok(&[
        "build",
        "-f",
        containerfile.to_str().unwrap(),
        "-t",
        IMAGE,
        context.to_str().unwrap(),
    ]);
    let layers = pm.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", IMAGE]);
    assert_eq!(layers, "1", "one layer: the binary, nothing under it");

    write_json(
        &conf_dir.join("10-kindnet.conflist"),
        &kindnet(&lab, Value::Null),
    );
    let before = snapshot(&conf_dir);
    write_json(&config.join("plugin.json"), &oam(&lab));

    // The init container's step, twice (idempotent).
    for _ in 0..2 {
        in_image(
            &pm,
            &bin_dir,
            &conf_dir,
            &config,
            &[
                "install",
                "--patch",
                "auto",
                "--plugin",
                "/config/plugin.json",
            ],
        );
    }
    assert!(bin_dir.join("gwsteer").is_file());
    let chained: Value =
        serde_json::from_slice(&fs::read(conf_dir.join("10-kindnet.conflist")).unwrap()).unwrap();
    let types: Vec<&str> = chained["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert_eq!(types, ["ptp", "portmap", "gwsteer"], "{chained}");

    let ip = start_pod(&pm, "steered");
    assert!(
        answered(&t.clib, &ip),
        "client B not answered after the install"
    );
    pm.ok(&["rm", "-f", "-t", "0", "steered"]);
    assert!(gw_rules(&t.node).is_empty(), "{:?}", gw_rules(&t.node));

    // Uninstall (as the image) and cleanup: the conf dir as before, byte
    // for byte, and nothing of gwsteer in the kernel.
    in_image(
        &pm,
        &bin_dir,
        &conf_dir,
        &config,
        &["install", "--uninstall"],
    );
    let cleanup = gwsteer_cli(
        &t.node,
        &["cleanup", "--state-dir", state_dir(&lab).to_str().unwrap()],
    );
    assert!(cleanup.success(), "{cleanup}");
    assert_eq!(snapshot(&conf_dir), before, "the conf dir after uninstall");
    assert!(!bin_dir.join("gwsteer").exists());
    assert!(gw_rules(&t.node).is_empty());
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
