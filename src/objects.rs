//! The small vocabulary of kernel objects gwsteer owns. Each object is plain
//! data (serialised into the state store) and is made real, removed or
//! observed through a [`Kernel`] backend, so planning and the verbs never
//! speak netlink themselves and tests can fake the kernel.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Routing protocol number stamped on every rule and route gwsteer creates
/// (`ip rule`/`ip route` show it as `proto 211`, or `proto gwsteer` with
/// install/rt_protos.d/gwsteer.conf). DEL, GC, reconcile and cleanup only
/// ever touch objects that carry it.
pub const RTPROT_GWSTEER: u8 = 211;

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

/// A policy routing rule, `ip rule add [from SRC] [to DST] [fwmark M/MASK]
/// [iif DEV] priority P lookup TABLE proto gwsteer`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    pub family: Family,
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmask: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iif: Option<String>,
    pub table: u32,
}

/// One nexthop of a route. `weight` is 1…256 as `ip route` prints it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    pub via: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u16,
}

fn default_weight() -> u16 {
    1
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Unicast,
    Unreachable,
}

/// A route in a table: `ip route replace DST table T [via … dev …|nexthop …]
/// proto gwsteer`. One nexthop is a plain route; several a multipath route.
/// A route with no nexthops and a `dev` is a device route (`dev X scope link`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    pub dst: IpNet,
    pub table: u32,
    pub kind: RouteKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nexthops: Vec<NextHop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

impl RouteSpec {
    pub fn family(&self) -> Family {
        Family::of_net(&self.dst)
    }
}

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
        backend: crate::firewall::Backend,
        firewall: crate::firewall::FwObject,
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
            Object::Firewall { .. } => Side::Node,
        }
    }

    pub fn sysctl(key: &str, value: &str) -> Object {
        Object::Sysctl {
            key: key.to_string(),
            value: value.to_string(),
            side: Side::Node,
        }
    }

    pub fn firewall(backend: crate::firewall::Backend, obj: crate::firewall::FwObject) -> Object {
        Object::Firewall {
            backend,
            firewall: obj,
        }
    }
}

fn write_net(f: &mut fmt::Formatter<'_>, net: &IpNet) -> fmt::Result {
    if net.prefix_len() == net.max_prefix_len() {
        write!(f, "{}", net.addr())
    } else {
        write!(f, "{net}")
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rule {}:", self.family, self.priority)?;
        match &self.src {
            Some(src) => {
                f.write_str(" from ")?;
                write_net(f, src)?;
            }
            None => f.write_str(" from all")?,
        }
        if let Some(dst) = &self.dst {
            f.write_str(" to ")?;
            write_net(f, dst)?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
            if let Some(mask) = self.fwmask {
                write!(f, "/{mask:#x}")?;
            }
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        match self.table {
            TABLE_MAIN => f.write_str(" lookup main"),
            t => write!(f, " lookup {t}"),
        }
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} route ", self.family())?;
        if self.kind == RouteKind::Unreachable {
            f.write_str("unreachable ")?;
        }
        if self.dst.prefix_len() == 0 {
            f.write_str("default")?;
        } else {
            write_net(f, &self.dst)?;
        }
        write!(f, " table {}", self.table)?;
        match self.nexthops.as_slice() {
            [] => {}
            [one] => {
                write!(f, " via {}", one.via)?;
                if let Some(dev) = &one.dev {
                    write!(f, " dev {dev}")?;
                }
            }
            many => {
                for nh in many {
                    write!(f, " nexthop via {}", nh.via)?;
                    if let Some(dev) = &nh.dev {
                        write!(f, " dev {dev}")?;
                    }
                    write!(f, " weight {}", nh.weight)?;
                }
            }
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        Ok(())
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

/// The kernel, as gwsteer sees it. One implementation speaks netlink
/// ([`crate::netlink::NetlinkKernel`]); tests may fake it.
///
/// `ensure` is idempotent (an existing identical object is success), `remove`
/// treats an absent object as success, and `observe` never changes anything.
pub trait Kernel {
    fn ensure(&mut self, obj: &Object) -> Result<()>;
    fn remove(&mut self, obj: &Object) -> Result<()>;
    fn observe(&mut self, obj: &Object) -> Result<Presence>;
    /// Every rule in the node namespace carrying [`RTPROT_GWSTEER`], or
    /// pointing at one of `tables` (imposters in owned tables' rules).
    fn owned_rules(&mut self, tables: &[u32]) -> Result<Vec<RuleSpec>>;
    /// Every route in `table` (node namespace), whoever made it, with the
    /// protocol number it carries.
    fn table_routes(&mut self, table: u32) -> Result<Vec<(RouteSpec, u8)>>;
    /// The current value of a node sysctl (to restore it later).
    fn read_sysctl(&mut self, key: &str) -> Result<String> {
        Err(crate::error::Error::kernel(format!(
            "this backend cannot read sysctl {key}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
