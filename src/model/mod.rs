//! What gwsteer owns, as plain values: every kernel object it makes is one
//! of these, serialised into the state store and made real, removed or
//! observed through the kernel layer's `Kernel` backend, so planning
//! and the verbs never speak netlink themselves and tests can fake the
//! kernel. `Display` of every object reads like the `ip`/`nft` command
//! that would make it. No I/O here.

mod firewall;
mod group;
mod link;
mod object;
mod route;
mod rule;

pub use firewall::*;
pub use group::*;
pub use link::*;
pub use object::*;
pub use route::*;
pub use rule::*;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Routing protocol number stamped on every rule and route gwsteer creates
/// (`ip rule`/`ip route` show it as `proto 211`, or `proto gwsteer` with
/// install/rt_protos.d/gwsteer.conf). DEL, GC, reconcile and cleanup only
/// ever touch objects that carry it.
pub const RTPROT_GWSTEER: u8 = 211;

/// Bit 31 of the conntrack mark is the VRF's while `vrf.masquerade` is on:
/// it marks connections that started on the VRF leg, which the VRF's nat
/// chain masquerades (a `connmark` policy must not use it).
pub const VRF_CT_MARK_BIT: u32 = 0x8000_0000;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Family {
    #[serde(rename = "inet")]
    V4,
    #[serde(rename = "inet6")]
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        Family::of(&net.addr())
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        })
    }
}

pub(crate) fn write_net(f: &mut fmt::Formatter<'_>, net: &IpNet) -> fmt::Result {
    if net.prefix_len() == net.max_prefix_len() {
        write!(f, "{}", net.addr())
    } else {
        write!(f, "{net}")
    }
}
