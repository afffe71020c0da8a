//! Every kind of object gwsteer can own, and what the kernel holds for one.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Backend, FwObject, RouteSpec, RuleSpec};

/// Which network namespace an object lives in.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The namespace gwsteer runs in (the node's).
    #[default]
    Node,
    /// The pod's namespace (`CNI_NETNS`).
    Pod,
}

fn is_node(side: &Side) -> bool {
    *side == Side::Node
}

/// Every kind of object gwsteer can own.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(tag = "object", rename_all = "lowercase")]
pub enum Object {
    Rule {
        #[serde(flatten)]
        spec: RuleSpec,
        #[serde(default, skip_serializing_if = "is_node")]
        side: Side,
    },
    Route {
        #[serde(flatten)]
        spec: RouteSpec,
        #[serde(default, skip_serializing_if = "is_node")]
        side: Side,
    },
    /// A sysctl under /proc/sys, `key` dotted (`net.ipv4.conf.all.src_valid_mark`).
    Sysctl {
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "is_node")]
        side: Side,
    },
    /// A firewall object (node namespace), made by the configured backend.
    Firewall {
        backend: Backend,
        firewall: FwObject,
    },
    /// Gateway network infrastructure in the node: a bridge or a VXLAN,
    /// made if absent (marked as gwsteer's), kept up at its MTU.
    Link { link: super::LinkSpec },
    /// An address on a node link gwsteer made (a VRF leg):
    /// `ip addr add ADDR dev DEV` (IPv6 `nodad`).
    Address { dev: String, addr: IpNet },
    /// An uplink enslaved to VRF `vrf` (table `table`), with its addresses
    /// and routes; what it had before is kept in its group's `restore`
    /// (`Restore::uplinks`) and given back on removal.
    Uplink {
        dev: String,
        vrf: String,
        table: u32,
    },
    /// `vrf.masquerade`: pod traffic leaving VRF `vrf` by `uplinks` is
    /// masqueraded (nftables table `inet gwsteer-vrf-<vrf>`, see
    /// `vrf_nat`).
    VrfMasquerade {
        vrf: String,
        leg: String,
        uplinks: Vec<String>,
    },
    /// An all-zero FDB entry on a VXLAN: BUM traffic is also sent to `dst`
    /// (`bridge fdb append 00:00:00:00:00:00 dev DEV dst DST`).
    Fdb { dev: String, dst: IpAddr },
    /// A device's MTU (host veth, pod interface); `previous`, read at ADD,
    /// is put back on DEL.
    Mtu {
        #[serde(default, skip_serializing_if = "is_node")]
        side: Side,
        ifname: String,
        mtu: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<u32>,
    },
    /// A route in the pod's table that takes the slot of the pod's own
    /// route (`previous`, read at ADD and put back on DEL). A `keep` route
    /// sends its destination the way the pod sent it before: its nexthop is
    /// read from the pod at ADD.
    PodRoute {
        route: RouteSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<super::SavedRoute>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep: bool,
    },
    /// A sysctl inside the pod (`net.ipv4.ip_forward` of a router pod);
    /// `previous`, read at ADD, is put back on DEL.
    PodSysctl {
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
    },
    /// Inside a router pod: traffic leaving by any interface but `ifname`
    /// is masqueraded (an nftables table of gwsteer's in the pod).
    PodMasquerade { ifname: String },
    /// Inside a pod, a `connmark` policy on the pod side: connections that
    /// arrive on `ifname` get `mark` (under `mask`) on the connection, and
    /// the pod's replies get it back on the packet before routing (an
    /// nftables table of gwsteer's in the pod, one per policy and
    /// interface).
    PodConnmark {
        policy: String,
        ifname: String,
        mark: u32,
        mask: u32,
    },
}

impl Object {
    pub fn node_rule(spec: RuleSpec) -> Object {
        Object::Rule {
            spec,
            side: Side::Node,
        }
    }

    pub fn node_route(spec: RouteSpec) -> Object {
        Object::Route {
            spec,
            side: Side::Node,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            Object::Rule { side, .. }
            | Object::Route { side, .. }
            | Object::Sysctl { side, .. } => *side,
            Object::Mtu { side, .. } => *side,
            Object::Firewall { .. }
            | Object::Link { .. }
            | Object::Address { .. }
            | Object::Uplink { .. }
            | Object::VrfMasquerade { .. }
            | Object::Fdb { .. } => Side::Node,
            Object::PodRoute { .. }
            | Object::PodSysctl { .. }
            | Object::PodMasquerade { .. }
            | Object::PodConnmark { .. } => Side::Pod,
        }
    }

    /// The object as planned, without what ADD read from the kernel (previous
    /// values, a keep route's nexthop): compared with a fresh plan.
    pub fn planned(&self) -> Object {
        match self {
            Object::Mtu {
                side, ifname, mtu, ..
            } => Object::Mtu {
                side: *side,
                ifname: ifname.clone(),
                mtu: *mtu,
                previous: None,
            },
            Object::PodRoute { route, keep, .. } => {
                let mut route = route.clone();
                if *keep {
                    route.nexthops.clear();
                    route.dev = None;
                }
                Object::PodRoute {
                    route,
                    previous: None,
                    keep: *keep,
                }
            }
            Object::PodSysctl { key, value, .. } => Object::PodSysctl {
                key: key.clone(),
                value: value.clone(),
                previous: None,
            },
            other => other.clone(),
        }
    }

    /// Objects that are one kernel object: a changed config changes it in
    /// place (`ensure`) instead of removing and re-making it.
    pub fn same_place(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Link { link: a }, Object::Link { link: b }) => a.name == b.name,
            (
                Object::Mtu {
                    side: sa,
                    ifname: a,
                    ..
                },
                Object::Mtu {
                    side: sb,
                    ifname: b,
                    ..
                },
            ) => sa == sb && a == b,
            _ => false,
        }
    }

    pub fn sysctl(key: &str, value: &str) -> Object {
        Object::Sysctl {
            key: key.to_string(),
            value: value.to_string(),
            side: Side::Node,
        }
    }

    pub fn firewall(backend: Backend, obj: FwObject) -> Object {
        Object::Firewall {
            backend,
            firewall: obj,
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side() {
            Side::Node => "",
            Side::Pod => "pod ",
        };
        match self {
            Object::Rule { spec, .. } => write!(f, "{side}{spec}"),
            Object::Route { spec, .. } => write!(f, "{side}{spec}"),
            Object::Sysctl { key, value, .. } => write!(f, "{side}sysctl {key} = {value}"),
            Object::Firewall { backend, firewall } => write!(f, "{backend} {firewall}"),
            Object::Link { link } => write!(f, "{link}"),
            Object::Address { dev, addr } => write!(f, "address {addr} dev {dev}"),
            Object::VrfMasquerade { vrf, uplinks, .. } => write!(
                f,
                "nftables masquerade of pod traffic leaving vrf {vrf} by {}",
                uplinks.join(",")
            ),
            Object::Uplink { dev, vrf, table } => {
                write!(f, "uplink {dev} master {vrf} (routes to table {table})")
            }
            Object::Fdb { dev, dst } => write!(f, "fdb 00:00:00:00:00:00 dev {dev} dst {dst}"),
            Object::Mtu {
                ifname,
                mtu,
                previous,
                ..
            } => {
                write!(f, "{side}link {ifname} mtu {mtu}")?;
                match previous {
                    Some(p) => write!(f, " (was {p})"),
                    None => Ok(()),
                }
            }
            Object::PodRoute {
                route,
                previous,
                keep,
            } => {
                write!(f, "{side}{route}")?;
                if *keep {
                    f.write_str(" (keep)")?;
                }
                match previous {
                    Some(p) => write!(f, " (replaces {p})"),
                    None => Ok(()),
                }
            }
            Object::PodSysctl {
                key,
                value,
                previous,
            } => {
                write!(f, "{side}sysctl {key} = {value}")?;
                match previous {
                    Some(p) => write!(f, " (was {p})"),
                    None => Ok(()),
                }
            }
            Object::PodMasquerade { ifname } => {
                write!(
                    f,
                    "{side}nftables masquerade out of every interface but {ifname}"
                )
            }
            Object::PodConnmark {
                policy,
                ifname,
                mark,
                mask,
            } => {
                write!(
                    f,
                    "{side}nftables connmark {policy}: connections arriving on {ifname} marked {mark:#x}"
                )?;
                if *mask != u32::MAX {
                    write!(f, "/{mask:#x}")?;
                }
                Ok(())
            }
        }
    }
}

/// What the kernel holds for an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present,
    Missing,
    /// Something with the object's identity exists but differs; the text says how.
    Drifted(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    #[test]
    fn rule_display_reads_like_ip_rule() {
        let r = RuleSpec {
            family: Family::V4,
            priority: 999,
            src: Some("10.244.0.5/32".parse().unwrap()),
            dst: Some("10.96.0.0/12".parse().unwrap()),
            fwmark: None,
            fwmask: None,
            iif: None,
            table: TABLE_MAIN,
        };
        assert_eq!(
            r.to_string(),
            "inet rule 999: from 10.244.0.5 to 10.96.0.0/12 lookup main"
        );
    }

    #[test]
    fn objects_round_trip_through_json() {
        let o = Object::node_route(RouteSpec {
            dst: "::/0".parse().unwrap(),
            table: 100,
            kind: RouteKind::Unicast,
            nexthops: vec![
                NextHop {
                    via: "fd00::1".parse().unwrap(),
                    dev: Some("eth1".into()),
                    weight: 1,
                },
                NextHop {
                    via: "fd00::2".parse().unwrap(),
                    dev: None,
                    weight: 3,
                },
            ],
            dev: None,
            metric: None,
        });
        let text = serde_json::to_string(&o).unwrap();
        assert!(text.contains("\"object\":\"route\""), "{text}");
        let back: Object = serde_json::from_str(&text).unwrap();
        assert_eq!(back, o);
    }
}
