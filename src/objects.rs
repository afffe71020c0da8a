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

    /// Where the kernel keys the route: table, destination network and the
    /// metric it stores (IPv6 stores 1024 for "none"). Two routes in one
    /// slot cannot coexist; `ensure` replaces whatever holds the slot.
    pub fn slot(&self) -> (u32, IpNet, u32) {
        let metric = match (self.family(), self.metric.unwrap_or(0)) {
            (Family::V6, 0) => 1024,
            (_, m) => m,
        };
        (self.table, self.dst.trunc(), metric)
    }
}

impl RuleSpec {
    /// The rule as the kernel compares and reports it: empty selectors
    /// (`/0`) dropped, a mark without a mask has the full mask, no mark at
    /// all is no mark. Equal canonical forms are the same kernel rule.
    pub fn canonical(&self) -> RuleSpec {
        let nonempty = |n: Option<IpNet>| n.filter(|n| n.prefix_len() > 0);
        let fwmask = self.fwmask.filter(|m| *m != u32::MAX);
        let fwmark = match (self.fwmark, fwmask) {
            (Some(0) | None, None) => None,
            (mark, _) => Some(mark.unwrap_or(0)),
        };
        RuleSpec {
            src: nonempty(self.src),
            dst: nonempty(self.dst),
            fwmark,
            fwmask,
            ..self.clone()
        }
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
    /// Gateway network infrastructure in the node: a bridge or a VXLAN,
    /// made if absent (marked as gwsteer's), kept up at its MTU.
    Link { link: crate::links::LinkSpec },
    /// An address on a node link gwsteer made (a VRF leg):
    /// `ip addr add ADDR dev DEV` (IPv6 `nodad`).
    Address { dev: String, addr: IpNet },
    /// An uplink enslaved to VRF `vrf` (table `table`), with its addresses
    /// and routes; what it had before is kept in its group's `restore`
    /// (key [`Object::uplink_restore_key`]) and given back on removal.
    Uplink {
        dev: String,
        vrf: String,
        table: u32,
    },
    /// `vrf.masquerade`: pod traffic leaving VRF `vrf` by `uplinks` is
    /// masqueraded (nftables table `inet gwsteer-vrf-<vrf>`, see
    /// [`crate::vrf_nat`]).
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
        previous: Option<crate::links::SavedRoute>,
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
            Object::PodRoute { .. } | Object::PodSysctl { .. } | Object::PodMasquerade { .. } => {
                Side::Pod
            }
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

    /// Where a group keeps what an uplink had before it was enslaved.
    pub fn uplink_restore_key(dev: &str) -> String {
        format!("uplink.{dev}")
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
    /// [`Kernel::observe`] of each object, in order; a backend may read
    /// what several objects share (a routing table) once.
    fn observe_all(&mut self, objs: &[&Object]) -> Result<Vec<Presence>> {
        objs.iter().map(|o| self.observe(o)).collect()
    }
    /// Every rule in the node namespace carrying [`RTPROT_GWSTEER`], or
    /// pointing at one of `tables` (imposters in owned tables' rules).
    fn owned_rules(&mut self, tables: &[u32]) -> Result<Vec<RuleSpec>>;
    /// Every route in `table` (node namespace), whoever made it, with the
    /// protocol number it carries.
    fn table_routes(&mut self, table: u32) -> Result<Vec<(RouteSpec, u8)>>;
    /// `obj` completed with what ADD must read before changing anything
    /// (the previous MTU, route or sysctl value that DEL puts back; a keep
    /// route's nexthop); `None` when there is nothing to do for it.
    fn capture(&mut self, obj: &Object) -> Result<Option<Object>> {
        Ok(Some(obj.clone()))
    }
    /// An uplink's addresses and main-table routes before enslaving, as the
    /// JSON a group keeps in `restore`; `None` if there is no such device.
    fn capture_uplink(&mut self, dev: &str) -> Result<Option<String>> {
        let _ = dev;
        Ok(None)
    }

    /// Make an uplink as `obj` says, with what `saved` (from
    /// [`Kernel::capture_uplink`]) says it had.
    fn ensure_uplink(&mut self, obj: &Object, saved: Option<&str>) -> Result<()> {
        let _ = saved;
        self.ensure(obj)
    }

    /// Return an uplink to the default VRF with what it had before.
    fn release_uplink(&mut self, obj: &Object, saved: Option<&str>) -> Result<()> {
        let _ = saved;
        self.remove(obj)
    }

    /// The current value of a node sysctl (to restore it later).
    fn read_sysctl(&mut self, key: &str) -> Result<String> {
        Err(crate::error::Error::kernel(format!(
            "this backend cannot read sysctl {key}"
        )))
    }
    /// Like [`Kernel::owned_rules`], with the protocol each rule carries, so
    /// that gwsteer's own rules can be told from imposters.
    fn rules_with_protocol(&mut self, tables: &[u32]) -> Result<Vec<(RuleSpec, u8)>> {
        let _ = tables;
        Err(crate::error::Error::kernel(
            "this backend cannot list rules with their protocol",
        ))
    }
    /// Remove a node rule or route that carries routing protocol `protocol`
    /// (0: any), whoever made it: imposters in owned tables. `remove` only
    /// ever touches objects carrying [`RTPROT_GWSTEER`].
    fn remove_foreign(&mut self, obj: &Object, protocol: u8) -> Result<()> {
        let _ = protocol;
        Err(crate::error::Error::kernel(format!(
            "this backend cannot remove {obj} made by someone else"
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
