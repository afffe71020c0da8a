//! `gatewayNetwork` (CONTRACT 3.2): the shared L2 segment between client
//! pods and a router pod. Parsed and validated here, with field paths; what
//! only the node can say (the underlay device, its MTU, which `remotes` are
//! this node's own) is collected at ADD and CHECK by `facts::collect` into
//! `plan::GatewayFacts`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Role, ifname};
use crate::cni::reader::At;
use crate::error::{Error, Result};
use crate::model::Family;

pub const DEFAULT_BRIDGE: &str = "gwbr0";
pub const DEFAULT_VXLAN: &str = "gwvx0";
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// VXLAN encapsulation: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const OVERHEAD_V4: u32 = 50;
/// The same over an IPv6 underlay (IPv6 header 40).
pub const OVERHEAD_V6: u32 = 70;
/// The smallest MTU gwsteer accepts (IPv4's minimum datagram every host
/// must take, RFC 791); an IPv6 pod needs 1280, checked at ADD.
pub const MIN_MTU: u32 = 576;
/// The largest VNI: 24 bits.
pub const MAX_VNI: u32 = 16_777_215;

/// How a VTEP reaches the other nodes for broadcast, unknown-unicast and
/// multicast (BUM) frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bum {
    /// A multicast group joined on the underlay.
    Group(IpAddr),
    /// Head-end replication: one all-zero FDB entry per remote VTEP.
    Remotes(Vec<IpAddr>),
}

impl Bum {
    pub fn family(&self) -> Family {
        match self {
            Bum::Group(g) => Family::of(g),
            Bum::Remotes(r) => r.first().map_or(Family::V4, Family::of),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub name: String,
    pub vni: u32,
    pub bum: Bum,
    pub port: u16,
    /// `None`: the device of the node's default route.
    pub underlay: Option<String>,
}

impl Vxlan {
    /// Bytes of encapsulation on this VXLAN's underlay.
    pub fn overhead(&self) -> u32 {
        match self.bum.family() {
            Family::V4 => OVERHEAD_V4,
            Family::V6 => OVERHEAD_V6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayNetwork {
    pub bridge: String,
    pub vxlan: Option<Vxlan>,
    /// Explicit MTU; `None`: auto (underlay MTU − overhead with a VXLAN,
    /// MTUs left alone without one).
    pub mtu: Option<u32>,
    pub role: Role,
    /// The router pod's addresses on the gateway network, at most one per
    /// address family (`router`: one address, or a list of one or two).
    pub routers: Vec<IpAddr>,
    pub routes: Vec<IpNet>,
    pub keep: Vec<IpNet>,
    pub masquerade: bool,
}

const KEYS: &[&str] = &[
    "bridge",
    "vxlan",
    "mtu",
    "role",
    "router",
    "routes",
    "keep",
    "masquerade",
    "masqueradeExemption",
];

pub fn parse_role(v: &At) -> Result<Role> {
    Ok(match v.str()? {
        "client" => Role::Client,
        "router" => Role::Router,
        "none" => Role::None,
        other => {
            return Err(v.err(format!("\"{other}\" is not one of client, router, none")));
        }
    })
}

fn parse_vxlan(v: &At, bridge: &str) -> Result<Vxlan> {
    let o = v.object()?;
    o.only(&["vni", "group", "remotes", "port", "underlay", "name"])?;
    let vni = o.req("vni")?.u32_in(1, MAX_VNI)?;
    let name = match o.get("name") {
        Some(n) => ifname(&n)?,
        None => DEFAULT_VXLAN.to_string(),
    };
    if name == bridge {
        return Err(o
            .req("name")?
            .err(format!("\"{name}\" is the bridge's name too")));
    }
    let bum = match (o.get("group"), o.get("remotes")) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(o.err(
                "give exactly one of group (multicast) or remotes (unicast head-end replication)",
            ));
        }
        (Some(g), None) => {
            let group = g.ip()?;
            if !group.is_multicast() {
                return Err(g.err(format!("{group} is not a multicast address")));
            }
            Bum::Group(group)
        }
        (None, Some(r)) => {
            let remotes = r.list_of(|x| {
                let ip = x.ip()?;
                if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
                    return Err(x.err(format!("{ip} is not a node's unicast address")));
                }
                Ok(ip)
            })?;
            let Some(first) = remotes.first() else {
                return Err(r.err("at least one remote is required"));
            };
            if let Some(i) = remotes
                .iter()
                .position(|x| Family::of(x) != Family::of(first))
            {
                return Err(Error::config(format!(
                    "{}[{i}]: {} is not of the same address family as {first}; one VXLAN has one underlay family",
                    r.path, remotes[i]
                )));
            }
            Bum::Remotes(remotes)
        }
    };
    let port = match o.get("port") {
        Some(p) => p.u32_in(1, 65535)? as u16,
        None => DEFAULT_VXLAN_PORT,
    };
    let underlay = o.get("underlay").map(|u| ifname(&u)).transpose()?;
    Ok(Vxlan {
        name,
        vni,
        bum,
        port,
        underlay,
    })
}

/// "IPv4" or "IPv6", for messages.
pub fn ip_version(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

fn default_route(family: Family) -> IpNet {
    match family {
        Family::V4 => "0.0.0.0/0",
        Family::V6 => "::/0",
    }
    .parse()
    .expect("a CIDR")
}

/// `router`: one address, or a list of one per address family (a
/// dual-stack router pod).
fn parse_routers(v: &At) -> Result<Vec<IpAddr>> {
    let one = |x: &At| -> Result<IpAddr> {
        let ip = x.ip()?;
        if let Some(why) = super::steering::unusable_gateway(ip) {
            return Err(x.err(format!("{ip} cannot be a router's address: {why}")));
        }
        Ok(ip)
    };
    if v.value.is_string() {
        return Ok(vec![one(v)?]);
    }
    if !v.value.is_array() {
        return Err(v.err(format!(
            "expected an IP address or a list of one per address family, found {}",
            crate::cni::reader::show(v.value)
        )));
    }
    let list = v.list_of(one)?;
    if list.is_empty() {
        return Err(v.err("at least one address is required"));
    }
    if let Some(i) = (1..list.len()).find(|&i| {
        list[..i]
            .iter()
            .any(|p| Family::of(p) == Family::of(&list[i]))
    }) {
        return Err(Error::config(format!(
            "{}[{i}]: {} is a second {} router address; give at most one per address family",
            v.path,
            list[i],
            ip_version(Family::of(&list[i]))
        )));
    }
    Ok(list)
}

/// Parse `gatewayNetwork`. The exemption is handed back separately: it is
/// the config's `masqueradeExemption` when the top level does not set one.
pub fn parse<'a>(v: &At<'a>) -> Result<(GatewayNetwork, Option<At<'a>>)> {
    let o = v.object()?;
    o.only(KEYS)?;
    let bridge = match o.get("bridge") {
        Some(b) => ifname(&b)?,
        None => DEFAULT_BRIDGE.to_string(),
    };
    let vxlan = o
        .get("vxlan")
        .map(|x| parse_vxlan(&x, &bridge))
        .transpose()?;
    let mtu = o.get("mtu").map(|m| m.u32_in(MIN_MTU, 65535)).transpose()?;
    let role = o
        .get("role")
        .map(|r| parse_role(&r))
        .transpose()?
        .unwrap_or(Role::Client);
    let routers = match o.get("router") {
        None => Vec::new(),
        Some(r) => parse_routers(&r)?,
    };
    let routes = match o.get("routes") {
        // The default route of each router's family.
        None if !routers.is_empty() => routers
            .iter()
            .map(|r| default_route(Family::of(r)))
            .collect(),
        None => vec![default_route(Family::V4)],
        Some(r) => {
            let list = r.list_of(|x| x.cidr())?;
            if list.is_empty() {
                return Err(r.err(
                    "at least one route is required (leave routes out for the default route of each router's family)",
                ));
            }
            list
        }
    };
    if !routers.is_empty() {
        for (i, dst) in routes.iter().enumerate() {
            if !routers.iter().any(|r| Family::of(r) == Family::of_net(dst)) {
                let given: Vec<String> = routers.iter().map(IpAddr::to_string).collect();
                return Err(Error::config(format!(
                    "{}.routes[{i}]: {dst} is not of the router's address family ({}); give the router's {} address too",
                    o.path,
                    given.join(", "),
                    ip_version(Family::of_net(dst))
                )));
            }
        }
    }
    let keep = match o.get("keep") {
        None => Vec::new(),
        Some(k) => {
            let list = k.list_of(|x| x.cidr())?;
            for (i, cidr) in list.iter().enumerate() {
                if routes.contains(cidr) {
                    return Err(Error::config(format!(
                        "{}[{i}]: {cidr} is in routes too; a CIDR is either sent to the router or kept",
                        k.path
                    )));
                }
            }
            list
        }
    };
    let masquerade = o
        .get("masquerade")
        .map(|m| m.bool())
        .transpose()?
        .unwrap_or(true);
    let gw = GatewayNetwork {
        bridge,
        vxlan,
        mtu,
        role,
        routers,
        routes,
        keep,
        masquerade,
    };
    Ok((gw, o.get("masqueradeExemption")))
}

impl GatewayNetwork {
    /// Checks that need the pod's role (config default or cni-args).
    pub fn check_role(&self, role: Role, path: &str) -> Result<()> {
        if role == Role::Client && self.routers.is_empty() {
            return Err(Error::config(format!(
                "{path}.router: required for client pods (role \"client\" is the default; give the router pod's address on the gateway network, or role \"router\" or \"none\")"
            )));
        }
        Ok(())
    }

    /// The MTU for this node: an explicit one must fit the underlay, auto is
    /// the underlay's less the encapsulation. `underlay_mtu` is `None`
    /// without a VXLAN.
    pub fn mtu_for(&self, underlay_mtu: Option<u32>) -> Result<Option<u32>> {
        let (Some(vx), Some(under)) = (&self.vxlan, underlay_mtu) else {
            return Ok(self.mtu);
        };
        let max = under.saturating_sub(vx.overhead());
        match self.mtu {
            Some(mtu) if mtu > max => Err(Error::config(format!(
                "gatewayNetwork.mtu: {mtu} is impossible over underlay {} (MTU {under}): a VXLAN over it carries at most {max}",
                vx.underlay.as_deref().unwrap_or("(default route device)")
            ))),
            Some(mtu) => Ok(Some(mtu)),
            None if max < MIN_MTU => Err(Error::config(format!(
                "gatewayNetwork.mtu: the underlay's MTU {under} leaves {max} for the VXLAN, below {MIN_MTU}"
            ))),
            None => Ok(Some(max)),
        }
    }
}

#[cfg(test)]
mod tests;
