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

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

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
