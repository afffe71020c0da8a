//! The README's "Try it with cnitool" section, as a user runs it: a conflist
//! of `conflist-examples/` in a `NETCONFPATH` directory, `cnitool add
//! <network> <netns>`, `check`, `del`, found by network name. Debian ships
//! no cnitool; the libcni driver's cnitool form does what upstream's does
//! (LoadConfList by name, `CNI_IFNAME`, `CNI_ARGS`, a container id made from
//! the netns path) over the same libcni.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::examples::{example_node, for_test, load, our_rules};
use crate::support::*;
use serde_json::Value;

/// `cnitool <op> <network> <netns>` in `node` with the README's environment.
fn cnitool(
    node: &str,
    netconfpath: &Path,
    cache: &Path,
    op: &str,
    network: &str,
    netns: &str,
) -> CniOutcome {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node])
        .arg(libcni_driver())
        .args(["cnitool", op, network, netns]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NETCONFPATH", netconfpath)
        .env("CNI_PATH", cni_path())
        .env("CNI_CACHE_DIR", cache)
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=oam;K8S_POD_NAME=web-0",
        );
    run_captured(cmd, Vec::new(), Duration::from_secs(120))
}

#[test]
fn the_readme_cnitool_session_steers_and_leaves_nothing() {
    let lab = Lab::new("cnitool");
    let (node, _rtr) = example_node(
        &lab,
        &["192.168.2.2/24", "fd00:2::2/64"],
        &["192.168.2.1/24", "fd00:2::1/64"],
    );
    let netconf = lab.subdir("net.d");
    let conf = for_test(&lab, load("10-bridge-source-oam.conflist"));
    let network = conf["name"].as_str().unwrap().to_string();
    write_json(&netconf.join("10-bridge-source-oam.conflist"), &conf);
    let cache = lab.subdir("cni-cache");
    let pod = lab.netns("pod");
    let netns = netns_path(&pod);

    let add = cnitool(&node, &netconf, &cache, "add", &network, &netns);
    let result: Value = add.expect_ok("cnitool add");
    let ours = our_rules(&node);
    for ip in crate::support::examples::pod_ips(&result) {
        assert!(
            ours.iter()
                .any(|r| r["src"] == ip.as_str() && r["table"] == "100"),
            "no rule from {ip} to table 100: {ours:?}"
        );
    }
    cnitool(&node, &netconf, &cache, "check", &network, &netns).expect_ok("cnitool check");
    cnitool(&node, &netconf, &cache, "del", &network, &netns).expect_ok("cnitool del");
    assert!(our_rules(&node).is_empty(), "{:?}", our_rules(&node));
    // A network the directory does not have is libcni's clear error.
    let missing = cnitool(&node, &netconf, &cache, "add", "no-such-net", &netns);
    assert!(!missing.success());
    assert!(missing.stderr.contains("no-such-net"), "{missing}");
}
