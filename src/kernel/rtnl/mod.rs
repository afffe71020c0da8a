//! Netlink backend: [`NetlinkKernel`] makes gwsteer's [`Object`]s real,
//! removes them and reads them back over rtnetlink.
//!
//! One blocking netlink socket ([`crate::kernel::nl`]) per network namespace: the
//! node's, opened in [`NetlinkKernel::new`], and the pod's, opened the first
//! time a pod-side object is touched. A socket belongs for life to the
//! namespace it was created in, so the pod's socket is created on a
//! short-lived thread inside the pod's netns ([`crate::kernel::netns`]); the
//! caller's thread never changes namespace.
//!
//! `ensure` and `remove` are one request each (plus one `RTM_GETLINK` per
//! device name a route names); only `observe`, `owned_rules` and
//! `table_routes` dump, and route dumps are filtered to one table by the
//! kernel (`NETLINK_GET_STRICT_CHK`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use crate::error::{Error, Result, code};
use crate::kernel::netns::Netns;
use crate::kernel::nl::{self, Ends};

mod links;
use crate::kernel::Kernel;
use crate::model::{
    Family, NextHop, Object, Presence, RTPROT_GWSTEER, RouteKind, RouteSpec, RuleSpec, Side,
};
pub use links::{LinkState, RouteAnswer, V6Address, VxlanState};

/// A kernel that has not answered in this long is not going to.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// IPv6 stores "no metric" (and metric 0) as 1024; IPv4 as 0.
const V6_DEFAULT_METRIC: u32 = 1024;

/// The Kernel backend that speaks rtnetlink.
pub struct NetlinkKernel {
    node: Conn,
    /// Opened on first use of a pod-side object.
    pod: Option<Conn>,
    pod_netns: Option<PathBuf>,
}

/// One netlink socket and what was learnt through it.
struct Conn {
    sock: nl::Socket,
    /// ifindex → name, for turning dumped routes back into specs. Names are
    /// per namespace, hence per connection. Nothing invalidates the cache: a
    /// device renamed, or an index reused, while this backend lives would
    /// show its old name. A CNI invocation is far too short for that.
    names: HashMap<u32, String>,
}

impl Conn {
    fn new(sock: nl::Socket) -> Conn {
        Conn {
            sock,
            names: HashMap::new(),
        }
    }
}

/// True when `err` says a network namespace does not exist (any more): DEL
/// treats that as success, as the CNI spec asks.
pub fn is_missing_netns(err: &Error) -> bool {
    err.code == code::UNKNOWN_CONTAINER
}

impl NetlinkKernel {
    /// A backend for the namespace the caller runs in (the node's) and, if
    /// given, the pod's network namespace file (`CNI_NETNS`), which is only
    /// opened when a pod-side object is touched.
    pub fn new(pod_netns: Option<PathBuf>) -> Result<NetlinkKernel> {
        let node = open_here()?;
        Ok(NetlinkKernel {
            node,
            pod: None,
            pod_netns,
        })
    }

    /// Opens a netlink socket and makes one cheap request (the loopback
    /// device): proof that gwsteer can talk to the kernel, for STATUS.
    pub fn probe() -> Result<()> {
        let mut conn = open_here()?;
        let mut msg = LinkMessage::default();
        msg.header.index = 1;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match exchange(&mut conn.sock, RouteNetlinkMessage::GetLink(msg), Req::Get) {
            Ok(_) => Ok(()),
            // Answered, just without a loopback: the socket works.
            Err(e) if e.errno() == Some(Errno::ENODEV as i32) => Ok(()),
            Err(e) => Err(e.into_error("asking the kernel for the loopback device")),
        }
    }

    /// The index of device `name` in the `side` namespace, `None` if there is
    /// no such device. One `RTM_GETLINK`, never a dump.
    pub fn link_index(&mut self, side: Side, name: &str) -> Result<Option<u32>> {
        self.lookup_index(side, name).map_err(|e| {
            e.into_error(format_args!(
                "looking up device {name}{}",
                side_suffix(side)
            ))
        })
    }

    /// One raw request in the node namespace, for `gwsteer explain`: a dump
    /// with `dump`, else a get by key. `Err((errno, error))`: the kernel's
    /// refusal (`errno` set) or a setup failure.
    pub(crate) fn node_query(
        &mut self,
        payload: RouteNetlinkMessage,
        dump: bool,
    ) -> std::result::Result<Vec<RouteNetlinkMessage>, Box<(Option<i32>, Error)>> {
        let req = if dump { Req::Dump } else { Req::Get };
        self.request(Side::Node, payload, req).map_err(|e| {
            let errno = e.errno();
            Box::new((errno, e.into_error("asking the kernel")))
        })
    }

    /// The name of node device `index` (a placeholder if it is gone).
    pub(crate) fn node_dev_name(&mut self, index: u32) -> Result<String> {
        self.dev_name(Side::Node, index)
            .map_err(|e| e.into_error("naming a device"))
    }

    fn conn(&mut self, side: Side) -> Result<&mut Conn> {
        Ok(match side {
            Side::Node => &mut self.node,
            Side::Pod => {
                let pod = match self.pod.take() {
                    Some(pod) => pod,
                    None => open_pod(self.pod_netns.as_deref())?,
                };
                self.pod.insert(pod)
            }
        })
    }

    fn request(
        &mut self,
        side: Side,
        payload: RouteNetlinkMessage,
        req: Req,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let conn = self.conn(side).map_err(NlError::Setup)?;
        exchange(&mut conn.sock, payload, req)
    }

    /// One `RTM_GETLINK` by name (without statistics); `None` if there is
    /// no such device.
    fn link_by_name(&mut self, side: Side, name: &str) -> Result<Option<LinkMessage>, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let answer = match self.request(side, RouteNetlinkMessage::GetLink(msg), Req::Get) {
            Ok(answer) => answer,
            Err(e) if e.errno() == Some(Errno::ENODEV as i32) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(answer.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        }))
    }

    fn lookup_index(&mut self, side: Side, name: &str) -> Result<Option<u32>, NlError> {
        let index = self.link_by_name(side, name)?.map(|link| link.header.index);
        if let (Some(index), Ok(conn)) = (index, self.conn(side)) {
            conn.names.insert(index, name.to_string());
        }
        Ok(index)
    }

    /// Like [`Self::lookup_index`], but a missing device is an error.
    fn require_index(&mut self, side: Side, name: &str) -> Result<u32, NlError> {
        match self.lookup_index(side, name)? {
            Some(index) => Ok(index),
            None => Err(NlError::Setup(Error::kernel(format!(
                "no device named {name}{}",
                side_suffix(side)
            )))),
        }
    }

    /// The name of device `index`, from the cache or one `RTM_GETLINK`;
    /// `None` if the device is gone.
    fn link_name(&mut self, side: Side, index: u32) -> Result<Option<String>, NlError> {
        if let Some(name) = self.conn(side).map_err(NlError::Setup)?.names.get(&index) {
            return Ok(Some(name.clone()));
        }
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let answer = match self.request(side, RouteNetlinkMessage::GetLink(msg), Req::Get) {
            Ok(answer) => answer,
            Err(e) if e.errno() == Some(Errno::ENODEV as i32) => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = answer.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            }),
            _ => None,
        });
        if let Some(name) = &name {
            let conn = self.conn(side).map_err(NlError::Setup)?;
            conn.names.insert(index, name.clone());
        }
        Ok(name)
    }

    /// A device name for a dumped ifindex; a vanished device gets a
    /// placeholder that matches no real name.
    fn dev_name(&mut self, side: Side, index: u32) -> Result<String, NlError> {
        Ok(self
            .link_name(side, index)?
            .unwrap_or_else(|| format!("ifindex{index}")))
    }

    // ---- rules ----

    fn ensure_rule(&mut self, side: Side, spec: &RuleSpec) -> Result<(), NlError> {
        let msg = RouteNetlinkMessage::NewRule(rule_message(spec));
        match self.request(side, msg, Req::Change(NLM_F_CREATE | NLM_F_EXCL)) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::EEXIST as i32) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_rule(&mut self, side: Side, spec: &RuleSpec) -> Result<(), NlError> {
        // Same selectors, priority, table and protocol as the add: the kernel
        // deletes only a rule matching all of them, so never someone else's.
        let msg = RouteNetlinkMessage::DelRule(rule_message(spec));
        match self.request(side, msg, Req::Change(0)) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::ENOENT as i32) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn observe_rule(&mut self, side: Side, spec: &RuleSpec) -> Result<Presence, NlError> {
        // Rule dumps cannot be filtered in the kernel; one family is read.
        let want = RuleIdentity::of(spec);
        let found = self.dump_rules(side, spec.family)?.iter().any(|r| {
            r.plain && r.action == RuleAction::ToTable && RuleIdentity::of(&r.spec) == want
        });
        Ok(if found {
            Presence::Present
        } else {
            Presence::Missing
        })
    }

    fn dump_rules(&mut self, side: Side, family: Family) -> Result<Vec<KernelRule>, NlError> {
        let mut msg = RuleMessage::default();
        msg.header.family = address_family(family);
        let answer = match self.request(side, RouteNetlinkMessage::GetRule(msg), Req::Dump) {
            Ok(answer) => answer,
            // No IPv6 in this kernel: no IPv6 rules either.
            Err(e) if family == Family::V6 && e.errno() == Some(Errno::EAFNOSUPPORT as i32) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(rule) => rule_from_message(rule),
                _ => None,
            })
            .filter(|r| r.spec.family == family)
            .collect())
    }

    // ---- routes ----

    fn ensure_route(&mut self, side: Side, spec: &RouteSpec) -> Result<(), NlError> {
        let msg = self.route_add_message(side, spec)?;
        // CREATE|REPLACE: a route with the same destination, table and metric
        // (ours after a drift, or anyone's) is replaced in one step.
        self.request(
            side,
            RouteNetlinkMessage::NewRoute(msg),
            Req::Change(NLM_F_CREATE | NLM_F_REPLACE),
        )
        .map(drop)
    }

    fn remove_route(&mut self, side: Side, spec: &RouteSpec) -> Result<(), NlError> {
        let msg = RouteNetlinkMessage::DelRoute(route_del_message(spec));
        match self.request(side, msg, Req::Change(0)) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.errno(), Some(errno) if errno == Errno::ESRCH as i32 || errno == Errno::ENOENT as i32) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn observe_route(&mut self, side: Side, spec: &RouteSpec) -> Result<Presence, NlError> {
        let routes = self.dump_routes(side, spec.family(), spec.table)?;
        Ok(route_presence(spec, &routes))
    }

    /// The kernel's answer to a route dump of one table, unfiltered here.
    fn dump_route_messages(
        &mut self,
        side: Side,
        family: Family,
        table: u32,
    ) -> Result<Vec<RouteMessage>, NlError> {
        // With NETLINK_GET_STRICT_CHK the kernel honours rtm_table/RTA_TABLE
        // in a dump request and walks only that table. It answers ENOENT when
        // the table does not exist (yet): no routes.
        let mut msg = RouteMessage::default();
        msg.header.address_family = address_family(family);
        msg.header.table = table_byte(table);
        msg.attributes.push(RouteAttribute::Table(table));
        let answer = match self.request(side, RouteNetlinkMessage::GetRoute(msg), Req::Dump) {
            Ok(answer) => answer,
            Err(e) if e.errno() == Some(Errno::ENOENT as i32) => return Ok(Vec::new()),
            Err(e) if family == Family::V6 && e.errno() == Some(Errno::EAFNOSUPPORT as i32) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(answer
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(route) => Some(route),
                _ => None,
            })
            .collect())
    }

    fn dump_routes(
        &mut self,
        side: Side,
        family: Family,
        table: u32,
    ) -> Result<Vec<KernelRoute>, NlError> {
        let mut routes = Vec::new();
        for msg in self.dump_route_messages(side, family, table)? {
            if let Some(route) = self.route_from_message(side, &msg)? {
                // The kernel filtered already; this guards against kernels
                // that ignore the filter (or dump every family, as a kernel
                // without IPv6 does for an AF_INET6 request).
                if route.spec.table == table && route.spec.family() == family {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    fn route_add_message(&mut self, side: Side, spec: &RouteSpec) -> Result<RouteMessage, NlError> {
        let family = spec.family();
        let mut msg = route_base_message(spec);
        if let Some(metric) = spec.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        match spec.kind {
            RouteKind::Unreachable => {
                if !spec.nexthops.is_empty() || spec.dev.is_some() {
                    return Err(NlError::Setup(Error::config(
                        "an unreachable route has no nexthops and no device",
                    )));
                }
                msg.header.kind = RouteType::Unreachable;
                msg.header.scope = RouteScope::Universe;
            }
            RouteKind::Unicast => {
                msg.header.kind = RouteType::Unicast;
                match spec.nexthops.as_slice() {
                    [] => {
                        let Some(dev) = &spec.dev else {
                            return Err(NlError::Setup(Error::config(
                                "a unicast route needs a nexthop or a device",
                            )));
                        };
                        msg.header.scope = RouteScope::Link;
                        let index = self.require_index(side, dev)?;
                        msg.attributes.push(RouteAttribute::Oif(index));
                    }
                    [one] => {
                        msg.header.scope = RouteScope::Universe;
                        msg.attributes.push(gateway_attribute(family, one.via)?);
                        if let Some(dev) = one.dev.as_ref().or(spec.dev.as_ref()) {
                            let index = self.require_index(side, dev)?;
                            msg.attributes.push(RouteAttribute::Oif(index));
                        }
                    }
                    many => {
                        msg.header.scope = RouteScope::Universe;
                        let mut hops = Vec::with_capacity(many.len());
                        for nh in many {
                            hops.push(self.multipath_hop(side, family, nh, spec.dev.as_ref())?);
                        }
                        msg.attributes.push(RouteAttribute::MultiPath(hops));
                    }
                }
            }
        }
        Ok(msg)
    }

    fn multipath_hop(
        &mut self,
        side: Side,
        family: Family,
        nh: &NextHop,
        route_dev: Option<&String>,
    ) -> Result<RouteNextHop, NlError> {
        if !(1..=256).contains(&nh.weight) {
            return Err(NlError::Setup(Error::config(format!(
                "nexthop via {} has weight {}; weights are 1 to 256",
                nh.via, nh.weight
            ))));
        }
        let mut hop = RouteNextHop::default();
        // rtnh_hops is the weight minus one.
        hop.hops = (nh.weight - 1) as u8;
        if let Some(dev) = nh.dev.as_ref().or(route_dev) {
            hop.interface_index = self.require_index(side, dev)?;
        }
        hop.attributes.push(gateway_attribute(family, nh.via)?);
        Ok(hop)
    }

    /// A dumped route as a spec, `None` for what gwsteer cannot express
    /// (local, broadcast, multicast, blackhole… routes, cache entries).
    fn route_from_message(
        &mut self,
        side: Side,
        msg: &RouteMessage,
    ) -> Result<Option<KernelRoute>, NlError> {
        let Some(family) = family_of(msg.header.address_family) else {
            return Ok(None);
        };
        let kind = match msg.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Unreachable => RouteKind::Unreachable,
            _ => return Ok(None),
        };
        if msg.header.flags.contains(RouteFlags::Cloned) {
            return Ok(None);
        }
        let mut dst_addr = None;
        let mut table = u32::from(msg.header.table);
        let mut metric = 0;
        let mut gateway = None;
        let mut oif = None;
        let mut multipath = None;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(addr) => dst_addr = route_ip(addr),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(addr) => gateway = route_ip(addr),
                RouteAttribute::Via(via) => gateway = via_ip(via),
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::MultiPath(hops) => multipath = Some(hops),
                _ => {}
            }
        }
        let addr = dst_addr.unwrap_or_else(|| unspecified(family));
        let Ok(dst) = IpNet::new(addr, msg.header.destination_prefix_length) else {
            return Ok(None);
        };
        let mut nexthops = Vec::new();
        let mut dev = None;
        if kind == RouteKind::Unicast {
            if let Some(hops) = multipath {
                for hop in hops {
                    let via = hop
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            RouteAttribute::Gateway(addr) => route_ip(addr),
                            RouteAttribute::Via(via) => via_ip(via),
                            _ => None,
                        })
                        // A device-only nexthop; NextHop needs an address.
                        .unwrap_or_else(|| unspecified(family));
                    let hop_dev = match hop.interface_index {
                        0 => None,
                        index => Some(self.dev_name(side, index)?),
                    };
                    nexthops.push(NextHop {
                        via,
                        dev: hop_dev,
                        weight: u16::from(hop.hops) + 1,
                    });
                }
            } else {
                let oif_name = match oif {
                    Some(index) => Some(self.dev_name(side, index)?),
                    None => None,
                };
                match gateway {
                    Some(via) => nexthops.push(NextHop {
                        via,
                        dev: oif_name,
                        weight: 1,
                    }),
                    None => dev = oif_name,
                }
            }
        }
        // IPv6 reject routes hang off `lo`; that device is no part of them.
        Ok(Some(KernelRoute {
            spec: RouteSpec {
                dst,
                table,
                kind,
                nexthops,
                dev,
                metric: reported_metric(family, metric),
            },
            protocol: u8::from(msg.header.protocol),
            exact: msg.header.tos == 0 && msg.header.source_prefix_length == 0,
        }))
    }
}

/// Sysctls and firewall objects are not made over rtnetlink; see
/// `System`, which routes each object to its backend.
fn not_netlink(obj: &Object) -> Error {
    Error::kernel(format!("{obj} is not a netlink object"))
}

impl Kernel for NetlinkKernel {
    fn ensure(&mut self, obj: &Object) -> Result<()> {
        let done = match obj {
            Object::Rule { spec, side } => self.ensure_rule(*side, spec),
            Object::Route { spec, side } => self.ensure_route(*side, spec),
            other => return Err(not_netlink(other)),
        };
        done.map_err(|e| failure(Op::Add, obj, e))
    }

    fn remove(&mut self, obj: &Object) -> Result<()> {
        let done = match obj {
            Object::Rule { spec, side } => self.remove_rule(*side, spec),
            Object::Route { spec, side } => self.remove_route(*side, spec),
            other => return Err(not_netlink(other)),
        };
        done.map_err(|e| failure(Op::Remove, obj, e))
    }

    fn observe(&mut self, obj: &Object) -> Result<Presence> {
        let seen = match obj {
            Object::Rule { spec, side } => self.observe_rule(*side, spec),
            Object::Route { spec, side } => self.observe_route(*side, spec),
            other => return Err(not_netlink(other)),
        };
        seen.map_err(|e| failure(Op::Observe, obj, e))
    }

    /// Routes are read one table and family at a time: several routes in
    /// one table cost one dump.
    fn observe_all(&mut self, objs: &[&Object]) -> Result<Vec<Presence>> {
        let mut dumps: Vec<((Side, Family, u32), Vec<KernelRoute>)> = Vec::new();
        let mut seen = Vec::with_capacity(objs.len());
        for obj in objs {
            let Object::Route { spec, side } = obj else {
                seen.push(self.observe(obj)?);
                continue;
            };
            let key = (*side, spec.family(), spec.table);
            let i = match dumps.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let routes = self
                        .dump_routes(key.0, key.1, key.2)
                        .map_err(|e| failure(Op::Observe, obj, e))?;
                    dumps.push((key, routes));
                    dumps.len() - 1
                }
            };
            seen.push(route_presence(spec, &dumps[i].1));
        }
        Ok(seen)
    }

    fn owned_rules(&mut self, tables: &[u32]) -> Result<Vec<RuleSpec>> {
        Ok(self
            .rules_with_protocol(tables)?
            .into_iter()
            .map(|(spec, _)| spec)
            .collect())
    }

    fn rules_with_protocol(&mut self, tables: &[u32]) -> Result<Vec<(RuleSpec, u8)>> {
        let mut owned = Vec::new();
        for family in [Family::V4, Family::V6] {
            let rules = self
                .dump_rules(Side::Node, family)
                .map_err(|e| e.into_error(format_args!("reading the node's {family} rules")))?;
            owned.extend(
                rules
                    .into_iter()
                    .filter(|r| r.action == RuleAction::ToTable)
                    .filter(|r| r.protocol == RTPROT_GWSTEER || tables.contains(&r.spec.table))
                    .map(|r| (r.spec, r.protocol)),
            );
        }
        Ok(owned)
    }

    fn remove_foreign(&mut self, obj: &Object, protocol: u8) -> Result<()> {
        // The same messages as `remove`, with the imposter's protocol (none:
        // any) instead of gwsteer's: the kernel matches the protocol when one
        // is given, so gwsteer's own object in the same place stays.
        let msg = match obj {
            Object::Rule {
                spec,
                side: Side::Node,
            } => {
                let mut msg = rule_message(spec);
                msg.attributes
                    .retain(|a| !matches!(a, RuleAttribute::Protocol(_)));
                if protocol != 0 {
                    msg.attributes
                        .push(RuleAttribute::Protocol(RouteProtocol::from(protocol)));
                }
                RouteNetlinkMessage::DelRule(msg)
            }
            Object::Route {
                spec,
                side: Side::Node,
            } => {
                let mut msg = route_del_message(spec);
                msg.header.protocol = RouteProtocol::from(protocol);
                RouteNetlinkMessage::DelRoute(msg)
            }
            other => return Err(not_netlink(other)),
        };
        match self.request(Side::Node, msg, Req::Change(0)) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.errno(), Some(errno) if errno == Errno::ESRCH as i32 || errno == Errno::ENOENT as i32) => {
                Ok(())
            }
            Err(e) => Err(failure(Op::Remove, obj, e)),
        }
    }

    fn table_routes(&mut self, table: u32) -> Result<Vec<(RouteSpec, u8)>> {
        let mut routes = Vec::new();
        for family in [Family::V4, Family::V6] {
            let found = self.dump_routes(Side::Node, family, table).map_err(|e| {
                e.into_error(format_args!("reading {family} routing table {table}"))
            })?;
            routes.extend(found.into_iter().map(|r| (r.spec, r.protocol)));
        }
        Ok(routes)
    }
}

// ---- talking to the kernel ----

/// What a request expects back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Req {
    /// A change acknowledged by the kernel; the extra `NLM_F_*` flags.
    Change(u16),
    /// One object by key.
    Get,
    /// A dump.
    Dump,
}

/// Why a request failed.
#[derive(Debug)]
enum NlError {
    /// The kernel refused: errno and the extended ack's text, if any.
    Kernel { errno: i32, ext: Option<String> },
    /// The socket or the answer was broken.
    Transport(String),
    /// Something failed before a request could be made (opening the pod's
    /// namespace, an unknown device, an impossible spec).
    Setup(Error),
}

impl NlError {
    fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// An [`Error`] whose message says what was being done. Setup errors
    /// keep their code (a missing netns stays `UNKNOWN_CONTAINER`).
    fn into_error(self, doing: impl fmt::Display) -> Error {
        match self {
            NlError::Setup(err) => err.context(doing),
            other => Error::kernel(format!("{doing}: {other}")),
        }
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NlError::Kernel { errno, ext } => {
                write!(f, "{}", io::Error::from_raw_os_error(*errno))?;
                if let Some(ext) = ext {
                    write!(f, ": {ext}")?;
                }
                Ok(())
            }
            NlError::Transport(msg) => f.write_str(msg),
            NlError::Setup(err) => write!(f, "{err}"),
        }
    }
}

impl From<nl::NlError> for NlError {
    fn from(e: nl::NlError) -> NlError {
        match e {
            nl::NlError::Kernel { errno, ext } => NlError::Kernel { errno, ext },
            nl::NlError::Socket(step, e) => NlError::Transport(match step {
                nl::Step::Send => format!("sending to the kernel: {e}"),
                _ => format!("receiving from the kernel: {e}"),
            }),
            nl::NlError::ShortSend { sent, len } => {
                NlError::Transport(format!("the kernel took {sent} of {len} bytes"))
            }
            nl::NlError::Timeout(t) => {
                NlError::Transport(format!("the kernel did not answer within {}s", t.as_secs()))
            }
            nl::NlError::TooLarge(n) => NlError::Transport(format!(
                "an answer of {n} bytes did not fit the receive buffer"
            )),
            nl::NlError::BadLength => NlError::Transport("a malformed netlink message".into()),
            nl::NlError::TruncatedError => NlError::Transport("a truncated netlink error".into()),
            nl::NlError::Malformed(what) => NlError::Transport(what.into()),
            nl::NlError::Other(what) => NlError::Transport(what),
        }
    }
}

/// An rtnetlink socket in the calling thread's namespace: strict checks
/// (dump filters honoured), extended acks, the request timeout.
fn open_socket() -> io::Result<nl::Socket> {
    let opened = nl::Socket::open(nl::NETLINK_ROUTE, 0).and_then(|mut sock| {
        sock.connect_kernel(REQUEST_TIMEOUT)?;
        sock.set_strict_check()?;
        Ok(sock)
    });
    opened.map_err(|e| match e {
        nl::NlError::Socket(_, e) => e,
        other => io::Error::other(NlError::from(other).to_string()),
    })
}

fn open_here() -> Result<Conn> {
    let sock = open_socket().map_err(|e| Error::io("opening a netlink socket", e))?;
    Ok(Conn::new(sock))
}

fn open_pod(netns: Option<&Path>) -> Result<Conn> {
    let ns = Netns::open_pod(netns)?;
    let sock = ns.run(|| {
        open_socket().map_err(|e| {
            Error::io(
                format_args!(
                    "opening a netlink socket in network namespace {}",
                    ns.path().display()
                ),
                e,
            )
        })
    })?;
    Ok(Conn::new(sock))
}

/// Sends one request and collects the answer; dumps interrupted by
/// concurrent changes are retried.
fn exchange(
    sock: &mut nl::Socket,
    payload: RouteNetlinkMessage,
    req: Req,
) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    let (flags, ends) = match req {
        Req::Change(flags) => (NLM_F_REQUEST | NLM_F_ACK | flags, Ends::Ack),
        Req::Get => (NLM_F_REQUEST, Ends::Reply),
        Req::Dump => (NLM_F_REQUEST | NLM_F_DUMP, Ends::Done),
    };
    Ok(sock.ask(&payload, flags, ends)?)
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Remove,
    Observe,
}

fn failure(op: Op, obj: &Object, err: NlError) -> Error {
    let doing = match op {
        Op::Add => "adding",
        Op::Remove => "removing",
        Op::Observe => "reading back",
    };
    let hint = err.errno().and_then(|errno| hint(op, obj, errno));
    let err = err.into_error(format_args!("{doing} {obj}"));
    match hint {
        Some(hint) => err.with_details(hint),
        None => err,
    }
}

fn hint(op: Op, obj: &Object, errno: i32) -> Option<&'static str> {
    let (family, gateway_route) = match obj {
        Object::Rule { spec, .. } => (spec.family, false),
        Object::Route { spec, .. } => (spec.family(), !spec.nexthops.is_empty()),
        _ => return None,
    };
    let errno = Errno::from_raw(errno);
    match errno {
        Errno::ENETUNREACH | Errno::EHOSTUNREACH if matches!(op, Op::Add) && gateway_route => {
            Some(match obj.side() {
                Side::Node => "is the gateway reachable from the node, on a connected network?",
                Side::Pod => "is the gateway reachable from the pod, on a connected network?",
            })
        }
        Errno::EAFNOSUPPORT | Errno::EACCES if family == Family::V6 => Some("is IPv6 enabled?"),
        Errno::EPERM | Errno::EACCES => Some("gwsteer needs CAP_NET_ADMIN"),
        _ => None,
    }
}

fn side_suffix(side: Side) -> &'static str {
    match side {
        Side::Node => "",
        Side::Pod => " in the pod's network namespace",
    }
}

// ---- messages ----

pub(crate) fn address_family(family: Family) -> AddressFamily {
    match family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    }
}

fn family_of(family: AddressFamily) -> Option<Family> {
    match family {
        AddressFamily::Inet => Some(Family::V4),
        AddressFamily::Inet6 => Some(Family::V6),
        _ => None,
    }
}

fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The header's 8-bit table field: the id itself when it fits, else
/// `RT_TABLE_UNSPEC` and the kernel reads the 32-bit `*_TABLE` attribute
/// (which gwsteer always sends as well).
fn table_byte(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(0)
}

/// A prefix of length 0 selects nothing; the kernel does not report it.
fn selector(net: Option<IpNet>) -> Option<IpNet> {
    net.filter(|n| n.prefix_len() > 0)
}

fn rule_message(spec: &RuleSpec) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = address_family(spec.family);
    msg.header.table = table_byte(spec.table);
    msg.header.action = RuleAction::ToTable;
    if let Some(src) = selector(spec.src) {
        msg.header.src_len = src.prefix_len();
        msg.attributes.push(RuleAttribute::Source(src.addr()));
    }
    if let Some(dst) = selector(spec.dst) {
        msg.header.dst_len = dst.prefix_len();
        msg.attributes.push(RuleAttribute::Destination(dst.addr()));
    }
    msg.attributes.push(RuleAttribute::Priority(spec.priority));
    msg.attributes.push(RuleAttribute::Table(spec.table));
    if let Some(mark) = spec.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(mark));
    }
    if let Some(mask) = spec.fwmask {
        msg.attributes.push(RuleAttribute::FwMask(mask));
    }
    if let Some(iif) = &spec.iif {
        msg.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_GWSTEER)));
    msg
}

/// A rule as the kernel compares it.
#[derive(PartialEq, Eq, Debug)]
struct RuleIdentity {
    family: Family,
    priority: u32,
    src: Option<IpNet>,
    dst: Option<IpNet>,
    mark: u32,
    mask: u32,
    iif: Option<String>,
    table: u32,
}

impl RuleIdentity {
    fn of(spec: &RuleSpec) -> RuleIdentity {
        let mark = spec.fwmark.unwrap_or(0);
        // The kernel gives a mark without a mask the mask 0xffffffff.
        let mask = spec.fwmask.unwrap_or(if mark != 0 { u32::MAX } else { 0 });
        RuleIdentity {
            family: spec.family,
            priority: spec.priority,
            src: selector(spec.src),
            dst: selector(spec.dst),
            mark,
            mask,
            iif: spec.iif.clone(),
            table: spec.table,
        }
    }
}

/// A dumped rule.
pub(crate) struct KernelRule {
    pub(crate) spec: RuleSpec,
    pub(crate) protocol: u8,
    pub(crate) action: RuleAction,
    /// False when the rule has selectors a [`RuleSpec`] cannot express
    /// (oif, ipproto, ports, uid range, tos, `not`…).
    plain: bool,
    /// Those of them `gwsteer explain` evaluates or shows.
    pub(crate) other: OtherSelectors,
}

/// What a rule selects on beyond a [`RuleSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OtherSelectors {
    /// `not`: the rule applies where its selectors do not match.
    pub(crate) invert: bool,
    pub(crate) tos: u8,
    pub(crate) oif: Option<String>,
    pub(crate) uid_range: Option<(u32, u32)>,
    /// `suppress_prefixlength` (the kernel's -1, unset, as `None`).
    pub(crate) suppress_prefixlen: Option<u32>,
    /// Looks up the table of the packet's L3 master device (a VRF).
    pub(crate) l3mdev: bool,
    pub(crate) ip_proto: Option<netlink_packet_route::IpProtocol>,
    pub(crate) sport: Option<(u16, u16)>,
    pub(crate) dport: Option<(u16, u16)>,
}

fn other_selectors(msg: &RuleMessage) -> OtherSelectors {
    let mut other = OtherSelectors {
        invert: msg.header.flags.contains(RuleFlags::Invert),
        tos: msg.header.tos,
        ..OtherSelectors::default()
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Oifname(name) => other.oif = Some(name.clone()),
            RuleAttribute::UidRange(u) => other.uid_range = Some((u.start, u.end)),
            RuleAttribute::SuppressPrefixLen(n) if *n != u32::MAX => {
                other.suppress_prefixlen = Some(*n)
            }
            RuleAttribute::L3MDev(on) => other.l3mdev = *on,
            RuleAttribute::IpProtocol(p) => other.ip_proto = Some(*p),
            RuleAttribute::SourcePortRange(p) => other.sport = Some((p.start, p.end)),
            RuleAttribute::DestinationPortRange(p) => other.dport = Some((p.start, p.end)),
            _ => {}
        }
    }
    other
}

/// A dumped rule message as a rule, `None` if it is of neither IP family.
pub(crate) fn rule_from_message(msg: &RuleMessage) -> Option<KernelRule> {
    let family = family_of(msg.header.family)?;
    let mut spec = RuleSpec {
        family,
        priority: 0,
        src: None,
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        table: u32::from(msg.header.table),
    };
    let mut protocol = 0;
    let mut plain = msg.header.tos == 0 && !msg.header.flags.contains(RuleFlags::Invert);
    let mut mark = None;
    let mut mask = None;
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Source(ip) => spec.src = IpNet::new(*ip, msg.header.src_len).ok(),
            RuleAttribute::Destination(ip) => spec.dst = IpNet::new(*ip, msg.header.dst_len).ok(),
            RuleAttribute::Iifname(name) => spec.iif = Some(name.clone()),
            RuleAttribute::Priority(p) => spec.priority = *p,
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::Table(t) => spec.table = *t,
            RuleAttribute::Protocol(p) => protocol = u8::from(*p),
            // The kernel reports these on every rule, -1 meaning "unset".
            RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            _ => plain = false,
        }
    }
    if mark.is_some() || mask.is_some() {
        spec.fwmark = Some(mark.unwrap_or(0));
        spec.fwmask = mask.filter(|m| *m != u32::MAX);
    }
    Some(KernelRule {
        spec,
        protocol,
        action: msg.header.action,
        plain,
        other: other_selectors(msg),
    })
}

/// What add and delete share: family, destination, table, protocol.
fn route_base_message(spec: &RouteSpec) -> RouteMessage {
    let dst = spec.dst.trunc();
    let mut msg = RouteMessage::default();
    msg.header.address_family = address_family(spec.family());
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = table_byte(spec.table);
    msg.header.protocol = RouteProtocol::from(RTPROT_GWSTEER);
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(dst.addr().into()));
    }
    msg.attributes.push(RouteAttribute::Table(spec.table));
    msg
}

fn route_del_message(spec: &RouteSpec) -> RouteMessage {
    let family = spec.family();
    let mut msg = route_base_message(spec);
    // Any scope and any type: a route of ours whose kind drifted still goes.
    // The protocol keeps the kernel from deleting anyone else's route.
    msg.header.scope = RouteScope::NoWhere;
    msg.header.kind = RouteType::Unspec;
    // IPv4 treats metric 0 as "any metric"; IPv6 needs the metric it stored.
    let metric = effective_metric(family, spec.metric);
    if metric != 0 {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

fn gateway_attribute(family: Family, via: IpAddr) -> Result<RouteAttribute, NlError> {
    match (family, via) {
        (Family::V4, IpAddr::V4(v4)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet(v4))),
        (Family::V6, IpAddr::V6(v6)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet6(v6))),
        // RFC 5549: an IPv4 route through an IPv6 neighbour.
        (Family::V4, IpAddr::V6(v6)) => Ok(RouteAttribute::Via(RouteVia::Inet6(v6))),
        (Family::V6, IpAddr::V4(v4)) => Err(NlError::Setup(Error::config(format!(
            "an IPv6 route cannot go via IPv4 gateway {v4}"
        )))),
    }
}

pub(crate) fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(crate) fn via_ip(via: &RouteVia) -> Option<IpAddr> {
    match via {
        RouteVia::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteVia::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The metric the kernel stores for `metric`.
fn effective_metric(family: Family, metric: Option<u32>) -> u32 {
    match (family, metric.unwrap_or(0)) {
        (Family::V6, 0) => V6_DEFAULT_METRIC,
        (_, m) => m,
    }
}

/// A stored metric as a spec holds it: the family's default is `None`.
fn reported_metric(family: Family, metric: u32) -> Option<u32> {
    (metric != effective_metric(family, None)).then_some(metric)
}

/// A dumped route.
struct KernelRoute {
    spec: RouteSpec,
    protocol: u8,
    /// False for routes keyed on more than destination and metric (a source
    /// prefix or a TOS), which a [`RouteSpec`] never is.
    exact: bool,
}

impl KernelRoute {
    fn describe(&self) -> String {
        if self.protocol == RTPROT_GWSTEER {
            format!("{} proto gwsteer", self.spec)
        } else {
            let proto = match RouteProtocol::from(self.protocol) {
                RouteProtocol::Other(n) => n.to_string(),
                named => named.to_string(),
            };
            format!("{} proto {proto}, not gwsteer's", self.spec)
        }
    }
}

/// Whether the kernel's `found` does what `want` asks. A device left out of
/// `want` matches any; a single nexthop's weight means nothing.
/// Where `spec` stands among the routes of its table and family: missing,
/// there as gwsteer's, or something else in its place.
fn route_presence(spec: &RouteSpec, routes: &[KernelRoute]) -> Presence {
    let family = spec.family();
    let dst = spec.dst.trunc();
    let metric = effective_metric(family, spec.metric);
    let same_place: Vec<&KernelRoute> = routes
        .iter()
        .filter(|r| {
            r.exact && r.spec.dst == dst && effective_metric(family, r.spec.metric) == metric
        })
        .collect();
    if same_place.is_empty() {
        return Presence::Missing;
    }
    if same_place
        .iter()
        .any(|r| r.protocol == RTPROT_GWSTEER && route_matches(spec, &r.spec))
    {
        return Presence::Present;
    }
    let found: Vec<String> = same_place.iter().map(|r| r.describe()).collect();
    Presence::Drifted(format!("expected {spec}; found {}", found.join("; ")))
}

fn route_matches(want: &RouteSpec, found: &RouteSpec) -> bool {
    if want.kind != found.kind {
        return false;
    }
    if want.kind == RouteKind::Unreachable {
        return true;
    }
    let dev_ok = |want: Option<&String>, got: Option<&String>| want.is_none() || want == got;
    match want.nexthops.as_slice() {
        [] => found.nexthops.is_empty() && dev_ok(want.dev.as_ref(), found.dev.as_ref()),
        [one] => match found.nexthops.as_slice() {
            [got] => {
                got.via == one.via
                    && dev_ok(one.dev.as_ref().or(want.dev.as_ref()), got.dev.as_ref())
            }
            _ => false,
        },
        many => {
            if found.nexthops.len() != many.len() {
                return false;
            }
            let mut unused: Vec<&NextHop> = found.nexthops.iter().collect();
            // Nexthops naming a device first, so a device-less one cannot
            // take the kernel nexthop a more specific one needs.
            let mut wanted: Vec<&NextHop> = many.iter().collect();
            wanted.sort_by_key(|nh| nh.dev.is_none());
            wanted.into_iter().all(|nh| {
                let dev = nh.dev.as_ref().or(want.dev.as_ref());
                match unused.iter().position(|got| {
                    got.via == nh.via && got.weight == nh.weight && dev_ok(dev, got.dev.as_ref())
                }) {
                    Some(i) => {
                        unused.swap_remove(i);
                        true
                    }
                    None => false,
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    //! Kernel tests run as root, each in a throw-away network namespace of
    //! its own (a thread that `unshare`s, whose `ip` children inherit it),
    //! and read the kernel back with `ip -j`.

    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};

    use super::*;
    use crate::model::TABLE_MAIN;

    /// Runs `f` on a thread in a fresh network namespace with `lo` up. The
    /// namespace goes away with the thread and everything opened in it.
    fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET): these tests run as root");
            ip(&["link", "set", "lo", "up"]);
            f()
        });
        match thread.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip -j ARGS`, parsed; protocol 211 shows as "211" or, with
    /// rt_protos.d/gwsteer.conf installed, "gwsteer": always "211" here.
    fn ip_json(args: &[&str]) -> Value {
        let out = Command::new("ip")
            .arg("-j")
            .args(args)
            .output()
            .expect("running ip");
        assert!(
            out.status.success(),
            "ip -j {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return json!([]);
        }
        let mut v: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
        if let Value::Array(items) = &mut v {
            for item in items {
                if item["protocol"] == "gwsteer" {
                    item["protocol"] = json!("211");
                }
            }
        }
        v
    }

    /// Rules of one family with a priority other than the kernel's defaults.
    fn rules_json(family: &str) -> Vec<Value> {
        let v = ip_json(&[family, "rule", "show"]);
        v.as_array()
            .expect("an array")
            .iter()
            .filter(|r| ![0, 32766, 32767].contains(&r["priority"].as_u64().unwrap_or(0)))
            .cloned()
            .collect()
    }

    fn routes_json(family: &str, table: u32) -> Value {
        ip_json(&[family, "route", "show", "table", &table.to_string()])
    }

    /// Two veth ends, both up, each with an IPv4 and an IPv6 subnet: gateways
    /// 10.1.0.1/fd00:1::1 are on v0, 10.2.0.1/fd00:2::1 on v1.
    fn two_links() {
        ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        for (dev, v4, v6) in [
            ("v0", "10.1.0.2/24", "fd00:1::2/64"),
            ("v1", "10.2.0.2/24", "fd00:2::2/64"),
        ] {
            ip(&["link", "set", dev, "up"]);
            ip(&["addr", "add", v4, "dev", dev]);
            ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"]);
        }
    }

    fn kernel() -> NetlinkKernel {
        NetlinkKernel::new(None).expect("a netlink kernel")
    }

    fn rule(family: Family, priority: u32, src: &str, table: u32) -> RuleSpec {
        RuleSpec {
            family,
            priority,
            src: Some(src.parse().unwrap()),
            dst: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            table,
        }
    }

    fn hop(via: &str, dev: Option<&str>, weight: u16) -> NextHop {
        NextHop {
            via: via.parse().unwrap(),
            dev: dev.map(String::from),
            weight,
        }
    }

    fn route(dst: &str, table: u32, nexthops: Vec<NextHop>) -> RouteSpec {
        RouteSpec {
            dst: dst.parse().unwrap(),
            table,
            kind: RouteKind::Unicast,
            nexthops,
            dev: None,
            metric: None,
        }
    }

    /// ensure twice, observe Present, `check` the kernel, remove twice,
    /// observe Missing.
    fn round_trip(k: &mut NetlinkKernel, obj: &Object, check: impl FnOnce()) {
        k.ensure(obj).unwrap();
        k.ensure(obj).unwrap();
        assert_eq!(k.observe(obj).unwrap(), Presence::Present, "{obj}");
        check();
        k.remove(obj).unwrap();
        k.remove(obj).unwrap();
        assert_eq!(k.observe(obj).unwrap(), Presence::Missing, "{obj}");
    }

    #[test]
    fn rules_round_trip_in_both_families_and_large_tables() {
        in_netns(|| {
            two_links();
            let mut k = kernel();

            let v4 = Object::node_rule(rule(Family::V4, 1000, "10.244.0.5/32", 100));
            round_trip(&mut k, &v4, || {
                assert_eq!(
                    rules_json("-4"),
                    vec![
                        json!({"priority": 1000, "src": "10.244.0.5", "table": "100", "protocol": "211"})
                    ]
                );
            });

            let mut marked = rule(Family::V4, 1001, "10.244.0.0/16", 1_000_000);
            marked.dst = Some("10.96.0.0/12".parse().unwrap());
            marked.fwmark = Some(0x10);
            marked.fwmask = Some(0xff);
            marked.iif = Some("v0".into());
            let marked = Object::node_rule(marked);
            round_trip(&mut k, &marked, || {
                assert_eq!(
                    rules_json("-4"),
                    vec![json!({
                        "priority": 1001, "src": "10.244.0.0", "srclen": 16,
                        "dst": "10.96.0.0", "dstlen": 12,
                        "fwmark": "0x10", "fwmask": "0xff", "iif": "v0",
                        "table": "1000000", "protocol": "211"
                    })]
                );
            });

            let v6 = Object::node_rule(rule(Family::V6, 1000, "fd00:244::5/128", 100));
            round_trip(&mut k, &v6, || {
                assert_eq!(
                    rules_json("-6"),
                    vec![
                        json!({"priority": 1000, "src": "fd00:244::5", "table": "100", "protocol": "211"})
                    ]
                );
            });

            let mut v6_big = rule(Family::V6, 1002, "fd00:244::/64", 1_000_000);
            v6_big.fwmark = Some(7); // no mask: the kernel stores 0xffffffff
            let v6_big = Object::node_rule(v6_big);
            round_trip(&mut k, &v6_big, || {
                assert_eq!(
                    rules_json("-6"),
                    vec![json!({
                        "priority": 1002, "src": "fd00:244::", "srclen": 64,
                        "fwmark": "0x7", "table": "1000000", "protocol": "211"
                    })]
                );
            });

            assert!(rules_json("-4").is_empty() && rules_json("-6").is_empty());
        });
    }

    #[test]
    fn rule_observe_needs_every_selector() {
        in_netns(|| {
            let mut k = kernel();
            let spec = rule(Family::V4, 1000, "10.244.0.5/32", 100);
            k.ensure(&Object::node_rule(spec.clone())).unwrap();
            for other in [
                RuleSpec {
                    priority: 1001,
                    ..spec.clone()
                },
                RuleSpec {
                    table: 101,
                    ..spec.clone()
                },
                RuleSpec {
                    fwmark: Some(1),
                    ..spec.clone()
                },
                RuleSpec {
                    src: Some("10.244.0.6/32".parse().unwrap()),
                    ..spec.clone()
                },
                RuleSpec {
                    family: Family::V6,
                    src: None,
                    ..spec.clone()
                },
            ] {
                let obj = Object::node_rule(other);
                assert_eq!(k.observe(&obj).unwrap(), Presence::Missing, "{obj}");
                // Removing a rule that differs removes nothing.
                k.remove(&obj).unwrap();
            }
            assert_eq!(
                k.observe(&Object::node_rule(spec)).unwrap(),
                Presence::Present
            );
        });
    }

    #[test]
    fn single_nexthop_routes_round_trip() {
        in_netns(|| {
            two_links();
            let mut k = kernel();

            let v4 = Object::node_route(route(
                "10.9.0.0/16",
                100,
                vec![hop("10.1.0.1", Some("v0"), 1)],
            ));
            round_trip(&mut k, &v4, || {
                assert_eq!(
                    routes_json("-4", 100),
                    json!([{"dst": "10.9.0.0/16", "gateway": "10.1.0.1", "dev": "v0", "protocol": "211", "flags": []}])
                );
            });

            // No device given: the kernel picks it, and observe accepts that.
            let v6 = Object::node_route(route("fd09::/64", 100, vec![hop("fd00:2::1", None, 1)]));
            round_trip(&mut k, &v6, || {
                assert_eq!(
                    routes_json("-6", 100),
                    json!([{"dst": "fd09::/64", "gateway": "fd00:2::1", "dev": "v1", "protocol": "211",
                            "metric": 1024, "flags": [], "pref": "medium"}])
                );
            });

            let mut metric = route("10.10.0.0/16", 100, vec![hop("10.2.0.1", None, 1)]);
            metric.metric = Some(50);
            let metric = Object::node_route(metric);
            round_trip(&mut k, &metric, || {
                assert_eq!(
                    routes_json("-4", 100),
                    json!([{"dst": "10.10.0.0/16", "gateway": "10.2.0.1", "dev": "v1", "protocol": "211",
                            "metric": 50, "flags": []}])
                );
            });
            assert_eq!(routes_json("-4", 100), json!([]));
            assert_eq!(routes_json("-6", 100), json!([]));
        });
    }

    #[test]
    fn multipath_routes_carry_weights_in_both_families() {
        in_netns(|| {
            two_links();
            let mut k = kernel();

            let v4 = Object::node_route(route(
                "0.0.0.0/0",
                100,
                vec![
                    hop("10.1.0.1", Some("v0"), 1),
                    hop("10.2.0.1", Some("v1"), 3),
                ],
            ));
            round_trip(&mut k, &v4, || {
                assert_eq!(
                    routes_json("-4", 100),
                    json!([{"dst": "default", "protocol": "211", "flags": [], "nexthops": [
                        {"gateway": "10.1.0.1", "dev": "v0", "weight": 1, "flags": []},
                        {"gateway": "10.2.0.1", "dev": "v1", "weight": 3, "flags": []}
                    ]}])
                );
            });

            let v6 = Object::node_route(route(
                "::/0",
                1_000_000,
                vec![
                    hop("fd00:1::1", Some("v0"), 2),
                    hop("fd00:2::1", Some("v1"), 256),
                ],
            ));
            round_trip(&mut k, &v6, || {
                assert_eq!(
                    routes_json("-6", 1_000_000),
                    json!([{"dst": "default", "protocol": "211", "metric": 1024, "flags": [], "pref": "medium",
                            "nexthops": [
                        {"gateway": "fd00:1::1", "dev": "v0", "weight": 2, "flags": []},
                        {"gateway": "fd00:2::1", "dev": "v1", "weight": 256, "flags": []}
                    ]}])
                );
            });
        });
    }

    #[test]
    fn ensure_replaces_a_changed_multipath_route_whole() {
        in_netns(|| {
            two_links();
            let mut k = kernel();
            for (family, gw1, gw2, gw3) in [
                ("-4", "10.1.0.1", "10.2.0.1", "10.2.0.3"),
                ("-6", "fd00:1::1", "fd00:2::1", "fd00:2::3"),
            ] {
                let dst = if family == "-4" { "0.0.0.0/0" } else { "::/0" };
                let first = route(
                    dst,
                    100,
                    vec![hop(gw1, Some("v0"), 1), hop(gw2, Some("v1"), 1)],
                );
                k.ensure(&Object::node_route(first.clone())).unwrap();
                let second = route(
                    dst,
                    100,
                    vec![hop(gw1, Some("v0"), 2), hop(gw3, Some("v1"), 1)],
                );
                let second_obj = Object::node_route(second);
                assert!(matches!(
                    k.observe(&second_obj).unwrap(),
                    Presence::Drifted(_)
                ));
                k.ensure(&second_obj).unwrap();
                assert_eq!(k.observe(&second_obj).unwrap(), Presence::Present);
                let shown = routes_json(family, 100);
                let hops: Vec<(String, u64)> = shown[0]["nexthops"]
                    .as_array()
                    .expect("one multipath route")
                    .iter()
                    .map(|h| {
                        (
                            h["gateway"].as_str().unwrap().to_string(),
                            h["weight"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
                assert_eq!(
                    hops,
                    vec![(gw1.to_string(), 2), (gw3.to_string(), 1)],
                    "{shown}"
                );
                k.remove(&second_obj).unwrap();
                assert_eq!(routes_json(family, 100), json!([]));
            }
        });
    }

    #[test]
    fn unreachable_and_device_routes_round_trip() {
        in_netns(|| {
            two_links();
            let mut k = kernel();

            for (family, dst) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
                let unreachable = Object::node_route(RouteSpec {
                    kind: RouteKind::Unreachable,
                    ..route(dst, 100, vec![])
                });
                round_trip(&mut k, &unreachable, || {
                    let shown = routes_json(family, 100);
                    assert_eq!(shown[0]["type"], "unreachable", "{shown}");
                    assert_eq!(shown[0]["dst"], "default", "{shown}");
                    assert_eq!(shown[0]["protocol"], "211", "{shown}");
                });
            }

            let device = Object::node_route(RouteSpec {
                dev: Some("v1".into()),
                ..route("10.7.0.0/16", 1_000_000, vec![])
            });
            round_trip(&mut k, &device, || {
                assert_eq!(
                    routes_json("-4", 1_000_000),
                    json!([{"dst": "10.7.0.0/16", "dev": "v1", "protocol": "211", "scope": "link", "flags": []}])
                );
            });
        });
    }

    /// Several routes read back together say what each says alone, from
    /// one dump per table and family.
    #[test]
    fn observe_all_agrees_with_observe_one_by_one() {
        in_netns(|| {
            two_links();
            let mut k = kernel();
            let right = Object::node_route(route(
                "10.9.0.0/16",
                100,
                vec![hop("10.1.0.1", Some("v0"), 1)],
            ));
            let drifted = Object::node_route(route(
                "10.8.0.0/16",
                100,
                vec![hop("10.1.0.1", Some("v0"), 1)],
            ));
            let missing = Object::node_route(route(
                "10.7.0.0/16",
                100,
                vec![hop("10.1.0.1", Some("v0"), 1)],
            ));
            let elsewhere = Object::node_route(route(
                "10.9.0.0/16",
                101,
                vec![hop("10.2.0.1", Some("v1"), 1)],
            ));
            for obj in [&right, &drifted, &elsewhere] {
                k.ensure(obj).unwrap();
            }
            ip(&[
                "route",
                "replace",
                "10.8.0.0/16",
                "via",
                "10.2.0.1",
                "table",
                "100",
                "proto",
                "211",
            ]);
            let objs = [&right, &drifted, &missing, &elsewhere];
            let together = k.observe_all(&objs).unwrap();
            let alone: Vec<Presence> = objs.iter().map(|o| k.observe(o).unwrap()).collect();
            assert_eq!(together, alone);
            assert_eq!(together[0], Presence::Present);
            assert!(matches!(together[1], Presence::Drifted(_)), "{together:?}");
            assert_eq!(together[2], Presence::Missing);
            assert_eq!(together[3], Presence::Present);
        });
    }

    #[test]
    fn observe_reports_drift() {
        in_netns(|| {
            two_links();
            let mut k = kernel();
            let spec = route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v0"), 1)]);
            let obj = Object::node_route(spec.clone());
            k.ensure(&obj).unwrap();

            ip(&[
                "route",
                "replace",
                "10.9.0.0/16",
                "via",
                "10.2.0.1",
                "table",
                "100",
                "proto",
                "211",
            ]);
            match k.observe(&obj).unwrap() {
                Presence::Drifted(why) => {
                    assert!(
                        why.contains(
                            "expected inet route 10.9.0.0/16 table 100 via 10.1.0.1 dev v0"
                        ),
                        "{why}"
                    );
                    assert!(why.contains("found inet route 10.9.0.0/16 table 100 via 10.2.0.1 dev v1 proto gwsteer"), "{why}");
                }
                other => panic!("expected drift, got {other:?}"),
            }

            // Right nexthop, someone else's route.
            ip(&[
                "route",
                "replace",
                "10.9.0.0/16",
                "via",
                "10.1.0.1",
                "table",
                "100",
                "proto",
                "static",
            ]);
            match k.observe(&obj).unwrap() {
                Presence::Drifted(why) => {
                    assert!(why.contains("proto static, not gwsteer's"), "{why}")
                }
                other => panic!("expected drift, got {other:?}"),
            }

            // A kind change is drift too.
            ip(&[
                "route",
                "replace",
                "unreachable",
                "10.9.0.0/16",
                "table",
                "100",
                "proto",
                "211",
            ]);
            assert!(matches!(k.observe(&obj).unwrap(), Presence::Drifted(_)));

            // ensure repairs it in place.
            k.ensure(&obj).unwrap();
            assert_eq!(k.observe(&obj).unwrap(), Presence::Present);
            assert_eq!(
                routes_json("-4", 100),
                json!([{"dst": "10.9.0.0/16", "gateway": "10.1.0.1", "dev": "v0", "protocol": "211", "flags": []}])
            );

            // A route with another metric is another route, not drift.
            let other_metric = Object::node_route(RouteSpec {
                metric: Some(7),
                ..spec.clone()
            });
            assert_eq!(k.observe(&other_metric).unwrap(), Presence::Missing);

            // A drifted route of ours (other kind) still goes on remove.
            ip(&[
                "route",
                "replace",
                "unreachable",
                "10.9.0.0/16",
                "table",
                "100",
                "proto",
                "211",
            ]);
            k.remove(&obj).unwrap();
            assert_eq!(routes_json("-4", 100), json!([]));
        });
    }

    #[test]
    fn remove_leaves_other_protocols_routes_alone() {
        in_netns(|| {
            two_links();
            let mut k = kernel();
            ip(&[
                "route",
                "add",
                "10.9.0.0/16",
                "via",
                "10.1.0.1",
                "table",
                "100",
                "proto",
                "static",
            ]);
            ip(&[
                "-6",
                "route",
                "add",
                "fd09::/64",
                "via",
                "fd00:1::1",
                "table",
                "100",
                "proto",
                "static",
            ]);
            k.remove(&Object::node_route(route(
                "10.9.0.0/16",
                100,
                vec![hop("10.1.0.1", None, 1)],
            )))
            .unwrap();
            k.remove(&Object::node_route(route(
                "fd09::/64",
                100,
                vec![hop("fd00:1::1", None, 1)],
            )))
            .unwrap();
            assert_eq!(routes_json("-4", 100).as_array().unwrap().len(), 1);
            assert_eq!(routes_json("-6", 100).as_array().unwrap().len(), 1);
        });
    }

    #[test]
    fn owned_rules_and_table_routes_read_back_specs() {
        in_netns(|| {
            two_links();
            let mut k = kernel();

            let ours_v4 = rule(Family::V4, 1000, "10.244.0.5/32", 100);
            let mut ours_v6 = rule(Family::V6, 1000, "fd00:244::5/128", 1_000_000);
            ours_v6.iif = Some("v1".into());
            ours_v6.fwmark = Some(0x4);
            ours_v6.fwmask = Some(0xf);
            let ours_main = RuleSpec {
                src: None,
                dst: Some("10.96.0.0/12".parse().unwrap()),
                ..rule(Family::V4, 999, "0.0.0.0/0", TABLE_MAIN)
            };
            for r in [&ours_v4, &ours_v6, &ours_main] {
                k.ensure(&Object::node_rule(r.clone())).unwrap();
            }
            // An imposter pointing at our table, and a bystander.
            ip(&[
                "rule",
                "add",
                "from",
                "10.3.0.0/16",
                "priority",
                "2000",
                "table",
                "100",
            ]);
            ip(&[
                "rule",
                "add",
                "from",
                "10.4.0.0/16",
                "priority",
                "2001",
                "table",
                "200",
            ]);

            let mut owned = k.owned_rules(&[100, 1_000_000]).unwrap();
            owned.sort_by_key(|r| (r.family, r.priority));
            let imposter = RuleSpec {
                src: Some("10.3.0.0/16".parse().unwrap()),
                ..rule(Family::V4, 2000, "10.3.0.0/16", 100)
            };
            assert_eq!(owned, vec![ours_main, ours_v4, imposter, ours_v6]);

            let ours = [
                route(
                    "0.0.0.0/0",
                    100,
                    vec![
                        hop("10.1.0.1", Some("v0"), 1),
                        hop("10.2.0.1", Some("v1"), 4),
                    ],
                ),
                route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v0"), 1)]),
                RouteSpec {
                    dev: Some("v1".into()),
                    metric: Some(20),
                    ..route("10.8.0.0/16", 100, vec![])
                },
                RouteSpec {
                    kind: RouteKind::Unreachable,
                    ..route("::/0", 100, vec![])
                },
                route(
                    "fd09::/64",
                    100,
                    vec![
                        hop("fd00:1::1", Some("v0"), 1),
                        hop("fd00:2::1", Some("v1"), 2),
                    ],
                ),
            ];
            for r in &ours {
                k.ensure(&Object::node_route(r.clone())).unwrap();
            }
            ip(&[
                "route",
                "add",
                "10.50.0.0/16",
                "via",
                "10.2.0.1",
                "table",
                "100",
                "proto",
                "static",
            ]);
            // Elsewhere: must not show up.
            ip(&[
                "route",
                "add",
                "10.60.0.0/16",
                "via",
                "10.2.0.1",
                "table",
                "200",
            ]);
            ip(&[
                "-6",
                "route",
                "add",
                "fd60::/64",
                "via",
                "fd00:2::1",
                "table",
                "200",
            ]);

            let mut found = k.table_routes(100).unwrap();
            found.sort_by_key(|(r, _)| r.dst);
            let mut want: Vec<(RouteSpec, u8)> =
                ours.iter().cloned().map(|r| (r, RTPROT_GWSTEER)).collect();
            want.push((
                route("10.50.0.0/16", 100, vec![hop("10.2.0.1", Some("v1"), 1)]),
                4, // RTPROT_STATIC
            ));
            want.sort_by_key(|(r, _)| r.dst);
            assert_eq!(found, want);

            // The kernel itself filtered the dumps to the table asked for.
            for family in [Family::V4, Family::V6] {
                let raw = k.dump_route_messages(Side::Node, family, 100).unwrap();
                assert!(!raw.is_empty());
                for msg in &raw {
                    let table = msg
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            RouteAttribute::Table(t) => Some(*t),
                            _ => None,
                        })
                        .unwrap();
                    assert_eq!(table, 100, "{msg:?}");
                }
            }
            // And a table that does not exist reads as empty.
            assert!(k.table_routes(4242).unwrap().is_empty());
            // The main table holds the kernel's own routes, protocol kernel.
            let main = k.table_routes(TABLE_MAIN).unwrap();
            assert!(
                main.contains(&(
                    RouteSpec {
                        dev: Some("v0".into()),
                        ..route("10.1.0.0/24", TABLE_MAIN, vec![])
                    },
                    2
                )),
                "{main:?}"
            );
        });
    }

    #[test]
    fn errors_name_the_object_and_the_errno() {
        in_netns(|| {
            two_links();
            let mut k = kernel();
            let off_link =
                Object::node_route(route("10.9.0.0/16", 100, vec![hop("192.0.2.1", None, 1)]));
            let err = k.ensure(&off_link).unwrap_err();
            assert_eq!(err.code, code::KERNEL);
            assert!(
                err.msg.starts_with(
                    "adding inet route 10.9.0.0/16 table 100 via 192.0.2.1: Network is unreachable (os error 101)"
                ),
                "{err}"
            );
            assert_eq!(
                err.details,
                "is the gateway reachable from the node, on a connected network?"
            );

            let no_dev = Object::node_route(route(
                "10.9.0.0/16",
                100,
                vec![hop("10.1.0.1", Some("nosuch0"), 1)],
            ));
            let err = k.ensure(&no_dev).unwrap_err();
            assert_eq!(
                err.msg,
                "adding inet route 10.9.0.0/16 table 100 via 10.1.0.1 dev nosuch0: no device named nosuch0"
            );

            let bad_weight = Object::node_route(route(
                "10.9.0.0/16",
                100,
                vec![hop("10.1.0.1", None, 0), hop("10.2.0.1", None, 1)],
            ));
            assert_eq!(
                k.ensure(&bad_weight).unwrap_err().code,
                code::INVALID_CONFIG
            );
        });
    }

    #[test]
    fn link_index_and_probe() {
        in_netns(|| {
            two_links();
            let mut k = kernel();
            let links = ip_json(&["link", "show", "v1"]);
            let want = links[0]["ifindex"].as_u64().unwrap() as u32;
            assert_eq!(k.link_index(Side::Node, "v1").unwrap(), Some(want));
            assert_eq!(k.link_index(Side::Node, "lo").unwrap(), Some(1));
            assert_eq!(k.link_index(Side::Node, "nosuch0").unwrap(), None);
            NetlinkKernel::probe().unwrap();
        });
    }

    /// A named netns (`ip netns add`), deleted on drop, also when a test fails.
    struct NamedNetns(String);

    impl NamedNetns {
        fn new(tag: &str) -> NamedNetns {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "gwsteer-nltest-{}-{tag}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            ip(&["netns", "add", &name]);
            NamedNetns(name)
        }

        fn path(&self) -> PathBuf {
            PathBuf::from("/run/netns").join(&self.0)
        }
    }

    impl Drop for NamedNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    #[test]
    fn pod_side_objects_live_in_the_pod_netns() {
        in_netns(|| {
            two_links();
            let pod = NamedNetns::new("pod");
            let n = pod.0.clone();
            ip(&["-n", &n, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ]);
            ip(&["-n", &n, "link", "set", "eth0", "up"]);
            ip(&["-n", &n, "link", "set", "eth1", "up"]);
            ip(&["-n", &n, "addr", "add", "10.5.0.2/24", "dev", "eth0"]);

            let mut k = NetlinkKernel::new(Some(pod.path())).unwrap();
            let pod_route = Object::Route {
                spec: route(
                    "10.9.0.0/16",
                    TABLE_MAIN,
                    vec![hop("10.5.0.1", Some("eth0"), 1)],
                ),
                side: Side::Pod,
            };
            let pod_rule = Object::Rule {
                spec: rule(Family::V4, 1000, "10.5.0.2/32", 100),
                side: Side::Pod,
            };
            k.ensure(&pod_route).unwrap();
            k.ensure(&pod_rule).unwrap();
            assert_eq!(k.observe(&pod_route).unwrap(), Presence::Present);
            assert_eq!(k.observe(&pod_rule).unwrap(), Presence::Present);

            let shown = ip_json(&["-n", &n, "route", "show", "table", "main"]);
            let ours: Vec<&Value> = shown
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["protocol"] == "211")
                .collect();
            assert_eq!(
                ours,
                vec![
                    &json!({"dst": "10.9.0.0/16", "gateway": "10.5.0.1", "dev": "eth0", "protocol": "211", "flags": []})
                ]
            );
            let rules = ip_json(&["-n", &n, "rule", "show", "priority", "1000"]);
            assert_eq!(
                rules,
                json!([{"priority": 1000, "src": "10.5.0.2", "table": "100", "protocol": "211"}])
            );
            let eth0 = ip_json(&["-n", &n, "link", "show", "eth0"]);
            assert_eq!(
                k.link_index(Side::Pod, "eth0").unwrap(),
                Some(eth0[0]["ifindex"].as_u64().unwrap() as u32)
            );

            // Nothing leaked into the node's namespace.
            assert_eq!(k.link_index(Side::Node, "eth0").unwrap(), None);
            assert!(rules_json("-4").is_empty());
            assert!(
                k.table_routes(TABLE_MAIN)
                    .unwrap()
                    .iter()
                    .all(|(_, p)| *p != RTPROT_GWSTEER)
            );
            let node_twin = Object::node_route(route(
                "10.9.0.0/16",
                TABLE_MAIN,
                vec![hop("10.5.0.1", None, 1)],
            ));
            assert_eq!(k.observe(&node_twin).unwrap(), Presence::Missing);

            k.remove(&pod_route).unwrap();
            k.remove(&pod_rule).unwrap();
            assert_eq!(k.observe(&pod_route).unwrap(), Presence::Missing);
            assert_eq!(k.observe(&pod_rule).unwrap(), Presence::Missing);
            assert_eq!(
                ip_json(&["-n", &n, "rule", "show", "priority", "1000"]),
                json!([])
            );
        });
    }

    #[test]
    fn a_missing_pod_netns_is_recognisable() {
        in_netns(|| {
            let gone = NamedNetns::new("gone");
            let path = gone.path();
            drop(gone);
            let mut k = NetlinkKernel::new(Some(path.clone())).unwrap();
            let obj = Object::Route {
                spec: route("10.9.0.0/16", TABLE_MAIN, vec![hop("10.5.0.1", None, 1)]),
                side: Side::Pod,
            };
            for err in [k.ensure(&obj).unwrap_err(), k.remove(&obj).unwrap_err()] {
                assert!(is_missing_netns(&err), "{err:?}");
                assert_eq!(err.code, code::UNKNOWN_CONTAINER);
                assert!(err.msg.contains(&path.display().to_string()), "{err}");
                assert!(
                    err.msg.starts_with("adding pod inet route")
                        || err.msg.starts_with("removing pod inet route"),
                    "{err}"
                );
            }
            // A file that is not a namespace (the mount point a deleted
            // namespace leaves behind) counts as missing too.
            let not_ns =
                std::env::temp_dir().join(format!("gwsteer-nltest-notns-{}", std::process::id()));
            std::fs::write(&not_ns, b"").unwrap();
            let mut k = NetlinkKernel::new(Some(not_ns.clone())).unwrap();
            let err = k.ensure(&obj).unwrap_err();
            let _ = std::fs::remove_file(&not_ns);
            assert!(is_missing_netns(&err), "{err:?}");
            assert!(err.msg.ends_with("is not a network namespace"), "{err}");
            // A pod-side object without any pod netns is a caller error.
            let mut k = kernel();
            assert_eq!(k.ensure(&obj).unwrap_err().code, code::INVALID_ENV);
            // Node-side work is unaffected.
            assert_eq!(
                k.observe(&Object::node_rule(rule(
                    Family::V4,
                    1000,
                    "10.1.1.1/32",
                    100
                )))
                .unwrap(),
                Presence::Missing
            );
        });
    }

    #[test]
    fn route_matching_ignores_what_the_kernel_fills_in() {
        let want = route("10.9.0.0/16", 100, vec![hop("10.1.0.1", None, 1)]);
        let got = route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v0"), 1)]);
        assert!(route_matches(&want, &got));
        assert!(!route_matches(
            &got,
            &route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v1"), 1)])
        ));

        let many = route(
            "0.0.0.0/0",
            100,
            vec![hop("10.1.0.1", None, 1), hop("10.1.0.1", Some("v1"), 1)],
        );
        let kernel = route(
            "0.0.0.0/0",
            100,
            vec![
                hop("10.1.0.1", Some("v1"), 1),
                hop("10.1.0.1", Some("v0"), 1),
            ],
        );
        assert!(route_matches(&many, &kernel));
        let reweighted = route(
            "0.0.0.0/0",
            100,
            vec![
                hop("10.1.0.1", Some("v1"), 2),
                hop("10.1.0.1", Some("v0"), 1),
            ],
        );
        assert!(!route_matches(&many, &reweighted));

        assert_eq!(effective_metric(Family::V6, None), 1024);
        assert_eq!(effective_metric(Family::V6, Some(0)), 1024);
        assert_eq!(effective_metric(Family::V4, None), 0);
        assert_eq!(reported_metric(Family::V6, 1024), None);
        assert_eq!(reported_metric(Family::V4, 1024), Some(1024));
    }

    #[test]
    fn rule_identity_follows_the_kernels_defaults() {
        let plain = rule(Family::V4, 1000, "10.244.0.5/32", 100);
        let marked = RuleSpec {
            fwmark: Some(3),
            ..plain.clone()
        };
        let masked = RuleSpec {
            fwmask: Some(u32::MAX),
            ..marked.clone()
        };
        assert_eq!(RuleIdentity::of(&marked), RuleIdentity::of(&masked));
        let from_all = RuleSpec {
            src: Some("0.0.0.0/0".parse().unwrap()),
            ..plain.clone()
        };
        assert_eq!(
            RuleIdentity::of(&from_all),
            RuleIdentity::of(&RuleSpec { src: None, ..plain })
        );
    }
}
