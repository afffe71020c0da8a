//! The link-level vocabulary: node infrastructure links (the gateway
//! network's bridge and VXLAN, the `vrf` section's VRF device and veth
//! legs), and what a pod's attachment changes and must put back (a saved
//! route, an uplink's addresses and routes). Plain data, serialised into
//! the state store; the kernel layer makes it real (netlink for links, FDB
//! entries, MTUs and routes; the pod's namespace for sysctls and nftables).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::RouteSpec;

/// `IFLA_IFALIAS` of every link gwsteer creates: cleanup and DEL delete only
/// links that carry it, never a bridge the primary plugin or an operator made.
pub const ALIAS: &str = "gwsteer";

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum LinkKind {
    Bridge,
    Vxlan {
        vni: u32,
        /// Multicast group for BUM traffic; `None`: unicast (FDB entries).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<IpAddr>,
        /// Source address of the encapsulation (unicast mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<IpAddr>,
        port: u16,
        /// The underlay device.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dev: Option<String>,
    },
    /// A VRF device (`CONFIG_NET_VRF`) bound to routing table `table`.
    Vrf {
        table: u32,
    },
    /// One end of a veth pair; both ends are made together, the other is `peer`.
    Veth {
        peer: String,
    },
}

/// A node link gwsteer makes if absent and keeps up, at `mtu`, enslaved to `master`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LinkSpec {
    pub name: String,
    pub kind: LinkKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link {}", self.name)?;
        match &self.kind {
            LinkKind::Bridge => f.write_str(" type bridge")?,
            LinkKind::Vxlan {
                vni,
                group,
                local,
                port,
                dev,
            } => {
                write!(f, " type vxlan id {vni}")?;
                if let Some(group) = group {
                    write!(f, " group {group}")?;
                }
                if let Some(local) = local {
                    write!(f, " local {local}")?;
                }
                if let Some(dev) = dev {
                    write!(f, " dev {dev}")?;
                }
                write!(f, " dstport {port}")?;
            }
            LinkKind::Vrf { table } => write!(f, " type vrf table {table}")?,
            LinkKind::Veth { peer } => write!(f, " type veth peer {peer}")?,
        }
        if let Some(mtu) = self.mtu {
            write!(f, " mtu {mtu}")?;
        }
        if let Some(master) = &self.master {
            write!(f, " master {master}")?;
        }
        Ok(())
    }
}

/// A route as the pod had it before gwsteer replaced it, with what `ip
/// route` shows beyond a [`RouteSpec`], so that DEL puts back exactly it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SavedRoute {
    pub route: RouteSpec,
    pub protocol: u8,
    pub scope: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefsrc: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub onlink: bool,
}

impl fmt::Display for SavedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} proto {}", self.route, self.protocol)?;
        if let Some(src) = self.prefsrc {
            write!(f, " src {src}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

/// What an uplink had before gwsteer enslaved it to a VRF: its addresses
/// (IPv6 ones are lost on enslaving and on release) and the routes of the
/// main table through it that the kernel did not make itself.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct SavedUplink {
    pub addresses: Vec<ipnet::IpNet>,
    pub routes: Vec<SavedRoute>,
}
