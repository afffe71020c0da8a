//! Topology building blocks shared by the test topologies (`asym`,
//! `fwsteer`, `reliability`, `lifecycle.rs`): a link with
//! its addresses, the node with an uplink that holds the gateways, and the
//! routers and clients of the asymmetric topology.
//!
//! Routers and clients are numbered by a letter `x` (a, b, c…, `n` = 1, 2,
//! 3…):
//!
//! ```text
//!   node eth-x ── down0 rtrx up0 ── eth0 clix
//!   192.168.n.2/24    192.168.n.1/24
//!   fd00:n::2/64      fd00:n::1/64
//!                          10.n.0.1/24      10.n.0.2/24
//!                          fd00:x::1/64     fd00:x::2/64
//! ```

use super::lab::Lab;

/// A veth pair `dev_a` (in `ns_a`) <-> `dev_b` (in `ns_b`), both up, with
/// `addrs_a` on `dev_a` and `addrs_b` on `dev_b` (added in that order).
pub fn wire(lab: &Lab, a: (&str, &str, &[&str]), b: (&str, &str, &[&str])) {
    let ((ns_a, dev_a, addrs_a), (ns_b, dev_b, addrs_b)) = (a, b);
    lab.veth(ns_a, dev_a, ns_b, dev_b);
    for cidr in addrs_a {
        lab.addr(ns_a, dev_a, cidr);
    }
    for cidr in addrs_b {
        lab.addr(ns_b, dev_b, cidr);
    }
}

/// A node namespace `node` (forwarding off) whose uplink `eth1`
/// (192.0.2.1/24, fd00:192::1/64) leads to namespace `up` (`eth0`, no
/// addresses): gateways on 192.0.2.0/24 and fd00:192::/64 resolve to it.
/// Returns the node's name.
pub fn uplink_node(lab: &Lab) -> String {
    let ns = lab.netns("node");
    let up = lab.netns("up");
    wire(
        lab,
        (&ns, "eth1", &["192.0.2.1/24", "fd00:192::1/64"]),
        (&up, "eth0", &[]),
    );
    ns
}

/// `n` of router letter `x`: a → 1, b → 2…
fn number(x: char) -> u32 {
    assert!(x.is_ascii_lowercase(), "router letter {x:?}");
    x as u32 - 'a' as u32 + 1
}

/// Router `rtr<x>` (forwarding on) linked to `node` (`eth-<x>` ──
/// `down0`, 192.168.n.0/24 and fd00:n::/64, node .2/::2, router .1/::1),
/// routing each of `back` (CIDRs) to the node. Returns the router's name.
pub fn router_link(lab: &Lab, node: &str, x: char, back: &[&str]) -> String {
    let n = number(x);
    let rtr = lab.router(&format!("rtr{x}"));
    let (node4, node6) = (format!("192.168.{n}.2"), format!("fd00:{n}::2"));
    wire(
        lab,
        (
            node,
            &format!("eth-{x}"),
            &[&format!("{node4}/24"), &format!("{node6}/64")],
        ),
        (
            &rtr,
            "down0",
            &[&format!("192.168.{n}.1/24"), &format!("fd00:{n}::1/64")],
        ),
    );
    for cidr in back {
        let via = if cidr.contains(':') { &node6 } else { &node4 };
        lab.route(&rtr, &["add", cidr, "via", via]);
    }
    rtr
}

/// Client `cli<x>` behind router `router` (`up0` ── `eth0`, 10.n.0.0/24 and
/// fd00:x::/64, router .1/::1, client .2/::2), its default routes via the
/// router. Returns the client's name.
pub fn client_behind(lab: &Lab, router: &str, x: char) -> String {
    let n = number(x);
    let cli = lab.netns(&format!("cli{x}"));
    let (rtr4, rtr6) = (format!("10.{n}.0.1"), format!("fd00:{x}::1"));
    wire(
        lab,
        (
            router,
            "up0",
            &[&format!("{rtr4}/24"), &format!("{rtr6}/64")],
        ),
        (
            &cli,
            "eth0",
            &[&format!("10.{n}.0.2/24"), &format!("fd00:{x}::2/64")],
        ),
    );
    lab.route(&cli, &["add", "default", "via", &rtr4]);
    lab.route(&cli, &["add", "default", "via", &rtr6]);
    cli
}
