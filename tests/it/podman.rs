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
use std::time::Duration;

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

/// A pod on `network`: busybox answering one line on :8080, forever.
fn start_pod_on(pm: &Podman, name: &str, network: &str) -> String {
    pm.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
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
    pm.ip_of(name, network)
}

fn start_pod(pm: &Podman, name: &str) -> String {
    start_pod_on(pm, name, NETWORK)
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

/// `gwsteer agent` on a podman node, as the DaemonSet runs it (here as a
/// process in the node namespace): the chain kept when the primary rewrites
/// its conflist, a pod started while the chain was broken adopted from
/// podman's libcni cache (not answered before, answered after), a pod's
/// rule and table route deleted by hand back at once, a pod whose
/// netns went without a DEL swept after the grace.
#[test]
fn the_agent_keeps_a_podman_node_steered() {
    let lab = Lab::new("pmagent");
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
    // A network name of this lab's own: podman's cache (/var/lib/cni/results)
    // is the machine's, and the agent adopts by network name. Its entries
    // go with the test, also when it fails (a pod whose netns was taken
    // away is removed without a DEL that could clear its entry).
    let network = format!("kindnet-{}", lab.prefix());
    struct CacheEntries(String);
    impl Drop for CacheEntries {
        fn drop(&mut self) {
            if let Ok(dir) = fs::read_dir("/var/lib/cni/results") {
                for e in dir.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&self.0) {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
    }
    let _entries = CacheEntries(format!("{network}-"));
    let conflist = conf_dir.join("10-kindnet.conflist");
    let primary = |mtu: u32| {
        let mut c = kindnet(&lab, Value::Null);
        c["name"] = json!(network);
        c["plugins"][0]["mtu"] = json!(mtu);
        c
    };
    let plugin_file = lab.tmpdir().join("plugin.json");
    write_json(&plugin_file, &oam(&lab));
    let chained = || {
        fs::read(&conflist)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| {
                v["plugins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["type"] == "gwsteer")
            })
    };
    let run_pod = |name: &str| start_pod_on(&pm, name, &network);

    // The chain is broken (the primary's file alone) and a pod starts.
    write_json(&conflist, &primary(1500));
    let missed = run_pod("missed");
    assert!(!answered(&t.clib, &missed), "answered before adoption");

    // The agent starts: it chains gwsteer and adopts the pod it missed.
    let log = lab.tmpdir().join("agent.log");
    let mut agent = std::process::Command::new("ip")
        .args(["netns", "exec", &t.node])
        .arg(&bin)
        .args(["agent", "--state-dir"])
        .arg(state_dir(&lab))
        .args(["--cni-conf-dir"])
        .arg(&conf_dir)
        .args(["--plugin"])
        .arg(&plugin_file)
        // A short full round: a netns path that goes while its pod lives
        // sends no notification; the round's scan finds it.
        .args([
            "--cni-cache-dir",
            "/var/lib/cni/results",
            "--sweep-grace",
            "1s",
            "--interval",
            "2s",
        ])
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("the agent");
    let agent_log = || fs::read_to_string(&log).unwrap_or_default();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut agent);
    assert!(
        eventually(Duration::from_secs(10), || answered(&t.clib, &missed)),
        "the missed pod was not adopted:\n{}",
        agent_log()
    );
    assert!(chained(), "not chained by the agent:\n{}", agent_log());

    // The primary rewrites its file without gwsteer: back within 1 s.
    let tmp = conf_dir.join("10-kindnet.conflist.tmp");
    write_json(&tmp, &primary(1450));
    fs::rename(&tmp, &conflist).unwrap();
    assert!(
        eventually(Duration::from_secs(1), chained),
        "not chained again within 1 s:\n{}",
        agent_log()
    );
    // A pod started now is steered by the chain itself.
    let fresh = run_pod("fresh");
    assert!(answered(&t.clib, &fresh), "a new pod was not steered");

    // Its rule and table route deleted by hand: back at once (one sample
    // each here, so a loaded machine gets 500 ms; the 100 ms p99 over 100
    // deletions is tests/it/agent.rs's).
    let rule = ["rule", "del", "from", fresh.as_str(), "lookup", "100"];
    ip(&t.node, rule);
    assert!(
        eventually(Duration::from_millis(500), || gw_rules(&t.node)
            .iter()
            .any(|r| r.contains(&format!("from {fresh} lookup 100")))),
        "rule not back within 500 ms:\n{}",
        agent_log()
    );
    ip(&t.node, ["route", "del", "default", "table", "100"]);
    assert!(
        eventually(Duration::from_millis(500), || !ip(
            &t.node,
            ["route", "show", "table", "100"]
        )
        .trim()
        .is_empty()),
        "table route not back within 500 ms:\n{}",
        agent_log()
    );

    // The pod's netns goes without a DEL: swept after the grace.
    let netns = pm.netns_of("missed");
    run("umount", [netns.as_str()]);
    let _ = fs::remove_file(&netns);
    assert!(
        eventually(Duration::from_secs(8), || !gw_rules(&t.node)
            .iter()
            .any(|r| r.contains(&format!("from {missed} lookup 100")))),
        "the record of a pod whose netns is gone was not swept:\n{}",
        agent_log()
    );
    assert!(agent_log().contains("sweep"), "{}", agent_log());
    pm.ok(&["rm", "-f", "-t", "0", "fresh", "missed"]);
}
