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
//! device name a route names); only `observe`, `rules_with_protocol` and
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

mod addr;
mod fdb;
mod link;
mod pod_route;
mod query;
mod route;
mod rule;
mod uplink;
mod wire;
use crate::kernel::Kernel;
use crate::model::{
    Family, NextHop, Object, Presence, RTPROT_GWSTEER, RouteKind, RouteSpec, RuleSpec, Side,
};
pub use addr::V6Address;
pub use link::{LinkState, VxlanState};
pub use query::RouteAnswer;
use route::*;
pub(crate) use route::{route_ip, via_ip};
use rule::*;
pub(crate) use rule::{KernelRule, OtherSelectors, rule_from_message};
use wire::*;

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

    /// Requests sent in the node's namespace so far.
    #[cfg(test)]
    fn node_requests(&self) -> u64 {
        self.node.sock.requests()
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
        self.request_kept(side, payload, req, |_| true)
    }

    /// [`NetlinkKernel::request`], parsing only the answer's messages
    /// `keep` says yes to ([`exchange_kept`]).
    fn request_kept(
        &mut self,
        side: Side,
        payload: RouteNetlinkMessage,
        req: Req,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let conn = self.conn(side).map_err(NlError::Setup)?;
        exchange_kept(&mut conn.sock, payload, req, keep)
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
        let conn = self.conn(side).map_err(NlError::Setup)?;
        let index = conn.sock.device_index(name)?;
        if let Some(index) = index {
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
        let conn = self.conn(side).map_err(NlError::Setup)?;
        let name = conn.sock.device_name(index)?;
        if let Some(name) = &name {
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
}

/// An [`NlError`] as an [`Error`] saying what was being done.
fn nl(doing: impl fmt::Display) -> impl FnOnce(NlError) -> Error {
    move |e| e.into_error(doing)
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

    /// Routes are read one table at a time, both families in one dump:
    /// several routes in one table cost one request.
    fn observe_all(&mut self, objs: &[&Object]) -> Result<Vec<Presence>> {
        let mut dumps: Vec<((Side, u32), Vec<KernelRoute>)> = Vec::new();
        let mut seen = Vec::with_capacity(objs.len());
        for obj in objs {
            let Object::Route { spec, side } = obj else {
                seen.push(self.observe(obj)?);
                continue;
            };
            let key = (*side, spec.table);
            let i = match dumps.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let routes = self
                        .dump_routes(key.0, None, key.1)
                        .map_err(|e| failure(Op::Observe, obj, e))?;
                    dumps.push((key, routes));
                    dumps.len() - 1
                }
            };
            seen.push(route_presence(spec, &dumps[i].1));
        }
        Ok(seen)
    }

    fn rules_with_protocol(&mut self, tables: &[u32]) -> Result<Vec<(RuleSpec, u8)>> {
        let rules = self.rules_where(Side::Node, |r| {
            r.protocol == RTPROT_GWSTEER || tables.contains(&r.spec.table)
        })?;
        Ok(rules.into_iter().map(|r| (r.spec, r.protocol)).collect())
    }

    fn gwsteer_rules_at(&mut self, tables: &[u32], priorities: &[u32]) -> Result<Vec<RuleSpec>> {
        NetlinkKernel::gwsteer_rules_at(self, tables, priorities)
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
        let found = self
            .dump_routes(Side::Node, None, table)
            .map_err(|e| e.into_error(format_args!("reading routing table {table}")))?;
        Ok(found.into_iter().map(|r| (r.spec, r.protocol)).collect())
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

#[cfg(test)]
mod tests;
