//! The `vrf` section on a node whose kernel has no VRF (`CONFIG_NET_VRF`
//! unset, as on the project's machines): ADD fails with 103 naming the
//! kernel option and leaves nothing behind (no link, rule, route, record);
//! STATUS fails with 50 saying the same; DEL succeeds; a broken `vrf`
//! section is still a config error with its field path. On a kernel that
//! does have VRF this test says "skipped": tests/vrf_guest.rs covers it.

use crate::support::reliability::*;
use crate::support::*;
use serde_json::{Value, json};

fn vrf_section() -> Value {
    json!({
        "name": "vrf-oam",
        "table": 10,
        "uplinks": ["eth1"],
        "legs": {
            "host": {"name": "oam-def", "addresses": ["192.169.1.1/30"]},
            "vrf": {"name": "oam-vrf", "addresses": ["192.169.1.2/30"]}
        },
        "gateways": [{"via": "192.0.2.254"}]
    })
}

#[test]
fn vrf_needs_kernel_support_and_is_refused_cleanly() {
    let node = Node::new("vrfhost");
    if node.lab.kernel_makes_vrf() {
        eprintln!("vrf_needs_kernel_support_and_is_refused_cleanly: skipped: this kernel has VRF");
        return;
    }
    let mut config = node.config("vrf-net", json!([]));
    config["vrf"] = vrf_section();
    let prev = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    let links_before = link_names(&node.ns);
    let rules_before = node.all_rules();
    let store_before = store_snapshot(&node.state);

    let add = node.add("c1", &config, &prev);
    let code = add.expect_error("ADD with vrf");
    let msg = add.error_msg().unwrap_or_default().to_string();
    assert_eq!(code, 103, "{add}");
    assert!(msg.contains("CONFIG_NET_VRF"), "{add}");
    assert_eq!(link_names(&node.ns), links_before, "ADD left a link behind");
    assert_eq!(node.all_rules(), rules_before, "ADD left a rule behind");
    assert_eq!(
        store_snapshot(&node.state),
        store_before,
        "ADD left a record behind"
    );

    let status = node.call("STATUS", "", &config, None, &[]);
    let code = status.expect_error("STATUS with vrf");
    let msg = status.error_msg().unwrap_or_default();
    assert_eq!(code, 50, "{status}");
    assert!(msg.contains("CONFIG_NET_VRF"), "{status}");
    // Without the vrf section the same node is fine.
    let mut plain = config.clone();
    plain.as_object_mut().unwrap().remove("vrf");
    node.call("STATUS", "", &plain, None, &[])
        .expect_ok("STATUS without vrf");

    // DEL never fails for what was never made.
    node.del("c1", &config, &prev).expect_ok("DEL with vrf");
    assert_eq!(link_names(&node.ns), links_before);

    // Config errors come first, with the field path, on any kernel.
    let mut broken = config.clone();
    broken["vrf"]["table"] = json!(255);
    let add = node.add("c2", &broken, &prev);
    assert_eq!(add.expect_error("ADD with vrf.table 255"), 7, "{add}");
    assert!(
        add.error_msg()
            .unwrap_or_default()
            .starts_with("vrf.table: 255 is a reserved table"),
        "{add}"
    );
}
