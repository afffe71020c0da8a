//! `vrf` (CONTRACT 3.3): a VRF device with its own routing table, a veth
//! pair whose one end (the host leg) stays in the default VRF and whose
//! other end (the VRF leg) is enslaved to the VRF, uplinks moved into the
//! VRF, routes inside the VRF table, and leak routes from the VRF table
//! back to the pods through the host leg. Parsed and validated here, with
//! field paths; nothing here touches the node.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::steering::parse_gateway;
use super::{Gateway, ifname};
use crate::cni::reader::{At, show};
use crate::error::{Error, Result};
use crate::model::Family;

/// One end of the veth pair: its name and its interface addresses (with
/// their prefix length, host bits set: `192.169.1.1/30`), one per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub name: String,
    pub addresses: Vec<IpNet>,
}

impl Leg {
    pub fn address_of(&self, family: Family) -> Option<&IpNet> {
        self.addresses.iter().find(|a| Family::of_net(a) == family)
    }
}

/// Routes in the VRF table back to the default VRF, via the host leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    /// A /32 or /128 per steered pod address.
    Pod,
    /// These CIDRs (`podCidrs`), for as long as any pod of the network is attached.
    Cidr(Vec<IpNet>),
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrf {
    pub name: String,
    pub table: u32,
    pub uplinks: Vec<String>,
    /// The end in the default VRF.
    pub host_leg: Leg,
    /// The end enslaved to the VRF.
    pub vrf_leg: Leg,
    pub gateways: Vec<Gateway>,
    /// Destinations routed via `gateways` in the VRF table, only of the
    /// families that have a gateway.
    pub destinations: Vec<IpNet>,
    pub leak: Leak,
    pub masquerade: bool,
    pub unreachable_default: bool,
}

const KEYS: &[&str] = &[
    "name",
    "table",
    "uplinks",
    "legs",
    "gateways",
    "destinations",
    "leak",
    "podCidrs",
    "masquerade",
    "unreachableDefault",
];

/// An interface address: `address/prefix`, host bits allowed (and expected).
fn interface_address(v: &At) -> Result<IpNet> {
    let net: IpNet = v.str()?.parse().map_err(|_| {
        v.err(format!(
            "{} is not an interface address (address/prefix length, e.g. \"192.169.1.1/30\")",
            show(v.value)
        ))
    })?;
    let ip = net.addr();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(v.err(format!("{ip} cannot be an interface's address")));
    }
    // /31 and /127 (point-to-point) and host prefixes have no network or
    // broadcast address to avoid.
    let host_bits = net.max_prefix_len() - net.prefix_len();
    if host_bits > 1 {
        let v4 = Family::of(&ip) == Family::V4;
        if ip == net.network() || (v4 && ip == net.broadcast()) {
            return Err(v.err(format!(
                "{ip} is the {} address of {}, not a host's",
                if ip == net.network() {
                    "network"
                } else {
                    "broadcast"
                },
                net.trunc()
            )));
        }
    }
    Ok(net)
}

fn parse_leg(v: &At) -> Result<Leg> {
    let o = v.object()?;
    o.only(&["name", "addresses"])?;
    let name = ifname(&o.req("name")?)?;
    let addresses_at = o.req("addresses")?;
    let addresses = addresses_at.list_of(interface_address)?;
    if addresses.is_empty() {
        return Err(addresses_at.err("at least one address is required"));
    }
    for (i, a) in addresses.iter().enumerate() {
        if addresses[..i]
            .iter()
            .any(|b| Family::of_net(b) == Family::of_net(a))
        {
            return Err(Error::config(format!(
                "{}[{i}]: {a} is a second {} address; give one per address family",
                addresses_at.path,
                Family::of_net(a)
            )));
        }
    }
    Ok(Leg { name, addresses })
}

/// Parse `vrf`. `steering_tables` are the tables of the steering policies,
/// which the VRF table must not share.
pub fn parse(v: &At, steering_tables: &[(String, u32)]) -> Result<Vrf> {
    let o = v.object()?;
    o.only(KEYS)?;
    let name_at = o.req("name")?;
    let name = ifname(&name_at)?;

    let table_at = o.req("table")?;
    let table = table_at.u32_in(1, u32::MAX)?;
    if matches!(table, 253..=255) {
        return Err(table_at.err(format!(
            "{table} is a reserved table (253 default, 254 main, 255 local)"
        )));
    }
    if let Some((policy, _)) = steering_tables.iter().find(|(_, t)| *t == table) {
        return Err(table_at.err(format!(
            "table {table} is already used by steering policy \"{policy}\""
        )));
    }

    let legs_at = o.req("legs")?;
    let legs = legs_at.object()?;
    legs.only(&["host", "vrf"])?;
    let host_at = legs.req("host")?;
    let vrf_at = legs.req("vrf")?;
    let host_leg = parse_leg(&host_at)?;
    let vrf_leg = parse_leg(&vrf_at)?;
    if vrf_leg.name == host_leg.name {
        return Err(vrf_at
            .object()?
            .req("name")?
            .err(format!("\"{}\" is the host leg's name too", vrf_leg.name)));
    }
    for (leg, at) in [(&host_leg, &host_at), (&vrf_leg, &vrf_at)] {
        if leg.name == name {
            return Err(at
                .object()?
                .req("name")?
                .err(format!("\"{name}\" is the VRF device's name too")));
        }
    }
    // The two ends of the veth pair are one link: each family's addresses
    // must be two different addresses of one subnet.
    let vrf_addrs_at = vrf_at.object()?.req("addresses")?;
    for (i, va) in vrf_leg.addresses.iter().enumerate() {
        let here = format!("{}[{i}]", vrf_addrs_at.path);
        let Some(ha) = host_leg.address_of(Family::of_net(va)) else {
            return Err(Error::config(format!(
                "{here}: {va} has no {} address on the host leg; give both legs an address of each family",
                Family::of_net(va)
            )));
        };
        if ha.trunc() != va.trunc() {
            return Err(Error::config(format!(
                "{here}: {va} is not in the host leg's subnet {} (the legs are the two ends of one link)",
                ha.trunc()
            )));
        }
        if ha.addr() == va.addr() {
            return Err(Error::config(format!(
                "{here}: {} is the host leg's address too",
                va.addr()
            )));
        }
    }
    if let Some(ha) = host_leg
        .addresses
        .iter()
        .find(|a| vrf_leg.address_of(Family::of_net(a)).is_none())
    {
        return Err(Error::config(format!(
            "{}.addresses: no {} address, but the host leg has {ha}; give both legs an address of each family",
            vrf_at.path,
            Family::of_net(ha)
        )));
    }

    let uplinks = match o.get("uplinks") {
        None => Vec::new(),
        Some(u) => {
            let list = u.list_of(ifname)?;
            let mut seen = BTreeSet::new();
            for (i, up) in list.iter().enumerate() {
                let at = format!("{}[{i}]", u.path);
                if !seen.insert(up.as_str()) {
                    return Err(Error::config(format!("{at}: \"{up}\" is listed twice")));
                }
                if *up == name || *up == host_leg.name || *up == vrf_leg.name {
                    return Err(Error::config(format!(
                        "{at}: \"{up}\" is the VRF device or one of its legs, not an uplink"
                    )));
                }
            }
            list
        }
    };

    let gateways = match o.get("gateways") {
        None => Vec::new(),
        Some(g) => g.list_of(parse_gateway)?,
    };
    let destinations = super::steering::destinations(&o, &gateways)?;

    let pod_cidrs_at = o.get("podCidrs");
    let leak = match o.get("leak") {
        None => "pod",
        Some(l) => l.str()?,
    };
    let leak = match leak {
        "pod" | "none" => {
            if let Some(p) = &pod_cidrs_at {
                return Err(p.err(format!("only used with leak \"cidr\" (leak is \"{leak}\")")));
            }
            if leak == "pod" { Leak::Pod } else { Leak::None }
        }
        "cidr" => {
            let Some(p) = &pod_cidrs_at else {
                return Err(Error::config(format!(
                    "{}.podCidrs: required for leak \"cidr\"",
                    o.path
                )));
            };
            let list = p.list_of(|x| x.cidr())?;
            if list.is_empty() {
                return Err(p.err("at least one CIDR is required for leak \"cidr\""));
            }
            for (i, cidr) in list.iter().enumerate() {
                if host_leg.address_of(Family::of_net(cidr)).is_none() {
                    return Err(Error::config(format!(
                        "{}[{i}]: {cidr} has no {} address on the legs to be leaked through",
                        p.path,
                        Family::of_net(cidr)
                    )));
                }
            }
            Leak::Cidr(list)
        }
        other => {
            return Err(o
                .req("leak")?
                .err(format!("\"{other}\" is not one of pod, cidr, none")));
        }
    };
    if let Some(m) = o.get("masquerade")
        && m.bool()?
        && uplinks.is_empty()
    {
        return Err(m.err("needs uplinks: it masquerades traffic leaving the VRF by them"));
    }
    let flag =
        |key: &str, default: bool| -> Result<bool> { o.get(key).map_or(Ok(default), |b| b.bool()) };
    Ok(Vrf {
        name,
        table,
        uplinks,
        host_leg,
        vrf_leg,
        gateways,
        destinations,
        leak,
        masquerade: flag("masquerade", false)?,
        unreachable_default: flag("unreachableDefault", true)?,
    })
}

impl Vrf {
    /// The address a steering policy names as its gateway to send traffic
    /// into the VRF: the VRF leg's address of `family` (the host leg's peer).
    pub fn entry(&self, family: Family) -> Option<IpAddr> {
        self.vrf_leg.address_of(family).map(|a| a.addr())
    }
}
