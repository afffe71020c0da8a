//! The gateway network (CONTRACT 3.2): a host bridge, optionally joined to
//! the other nodes' by a VXLAN, that client pods use to reach a router pod.
//!
//! - [`resolve`] (I/O, ADD and CHECK): what only the node can say — the
//!   underlay device (given, or the default route's), its MTU and so the
//!   auto MTU, which `remotes` are this node's own, the host end of the
//!   pod's veth — into [`NodeFacts`].
//! - [`plan_into`] (pure): the infrastructure group (bridge, VXLAN, FDB
//!   entries; it stays when its last holder goes, until `gwsteer cleanup`)
//!   and the pod's own objects: MTUs of both veth ends; for a client, the
//!   `keep` routes and the `routes` via the router; for a router,
//!   forwarding and the masquerade table in the pod.
//! - [`capture`] (ADD, before any change): what DEL puts back — previous
//!   MTUs, routes and sysctls — read from the kernel, or carried over from
//!   the attachment's earlier record on a re-ADD.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use serde_json::Value;

use crate::cni::Env;
use crate::config::gateway::{Bum, GatewayNetwork, NodeFacts};
use crate::config::{Config, Role};
use crate::error::{Error, Result, code};
use crate::links::{LinkKind, LinkSpec};
use crate::netlink::NetlinkKernel;
use crate::netlink::V6Address;
use crate::objects::{Family, Kernel, NextHop, Object, RouteKind, RouteSpec, Side, TABLE_MAIN};
use crate::plan::{Plan, Pod};
use crate::store::{NodeGroup, Record, SCHEMA};

/// Node groups whose key starts with this are infrastructure: they stay
/// when their last holder goes, until `gwsteer cleanup` (CONTRACT 4).
pub const INFRA_PREFIX: &str = "infra.";

/// The group of the gateway network's bridge, VXLAN and FDB entries.
pub const INFRA_GROUP: &str = "infra.gateway";

pub fn is_infrastructure(key: &str) -> bool {
    key.starts_with(INFRA_PREFIX)
}

/// A probe destination per family: nothing routes it specially, so the
/// route to it is the default route (`ip route get 192.0.2.1`).
fn default_route_probe(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from([192, 0, 2, 1]),
        Family::V6 => "2001:db8::1".parse().expect("an IPv6 address"),
    }
}

/// The host end of the pod's veth in a prevResult: an interface outside
/// the sandbox that is not the bridge.
pub fn host_veth(prev: Option<&Value>, bridge: &str) -> Option<String> {
    prev?["interfaces"]
        .as_array()?
        .iter()
        .filter(|i| i["sandbox"].as_str().is_none_or(str::is_empty))
        .filter_map(|i| i["name"].as_str())
        .find(|name| *name != bridge)
        .map(str::to_string)
}

/// The config with the gateway network's [`NodeFacts`] filled in (the
/// config itself when it has no gateway network). Errors for what the node
/// makes impossible (an MTU over the underlay's) are config errors.
pub fn resolve<'c>(config: &'c Config, env: &Env) -> Result<Cow<'c, Config>> {
    let Some(gw) = &config.gateway else {
        return Ok(Cow::Borrowed(config));
    };
    let mut facts = NodeFacts {
        ifname: env.ifname.clone(),
        host_veth: host_veth(config.prev_result.as_ref(), &gw.bridge),
        ..NodeFacts::default()
    };
    let mut underlay_mtu = None;
    if let Some(vx) = &gw.vxlan {
        let mut net = NetlinkKernel::new(None)?;
        let family = vx.bum.family();
        // The source the kernel would choose towards the first remote that
        // is not this node (an IPv6 underlay's VXLAN prefers it).
        let mut first_prefsrc = None;
        if let Bum::Remotes(remotes) = &vx.bum {
            for remote in remotes {
                match net.route_get(Side::Node, *remote)? {
                    Some(answer) if answer.local => {
                        log::debug!("vxlan remote {remote} is this node: skipped");
                    }
                    answer => {
                        if facts.remotes.is_empty() {
                            first_prefsrc = answer.and_then(|a| a.prefsrc);
                        }
                        facts.remotes.push(*remote);
                    }
                }
            }
        }
        let underlay = match &vx.underlay {
            Some(dev) => dev.clone(),
            None => net
                .route_get(Side::Node, default_route_probe(family))?
                .and_then(|a| a.oif)
                .ok_or_else(|| {
                    Error::config(format!(
                        "gatewayNetwork.vxlan.underlay: not given, and the node has no {family} default route to take it from"
                    ))
                })?,
        };
        let mtu = net.link_mtu(Side::Node, &underlay)?.ok_or_else(|| {
            Error::config(format!(
                "gatewayNetwork.vxlan.underlay: the node has no device named {underlay}"
            ))
        })?;
        underlay_mtu = Some(mtu);
        if family == Family::V6 {
            facts.local = Some(IpAddr::V6(vxlan_source_v6(
                &mut net,
                vx,
                &underlay,
                first_prefsrc,
            )?));
        }
        facts.underlay = Some(underlay);
    }
    facts.mtu = gw.mtu_for(underlay_mtu).map_err(|e| {
        if let Some(dev) = &facts.underlay {
            Error::new(
                code::INVALID_CONFIG,
                e.msg.replace("(default route device)", dev),
            )
        } else {
            e
        }
    })?;
    let mut resolved = config.clone();
    if let Some(gw) = resolved.gateway.as_mut() {
        gw.node = Some(facts);
    }
    Ok(Cow::Owned(resolved))
}

/// The source address of a VXLAN over an IPv6 underlay: a global,
/// usable (not tentative, deprecated or failed) IPv6 address of the
/// underlay. The one the VXLAN has already if it still qualifies (a new
/// one would re-make the VXLAN), else `towards_remote` (the one the kernel
/// chose towards the first remote), else the first stable one.
fn vxlan_source_v6(
    net: &mut NetlinkKernel,
    vx: &crate::config::gateway::Vxlan,
    underlay: &str,
    towards_remote: Option<IpAddr>,
) -> Result<Ipv6Addr> {
    let addresses = net.ipv6_addresses(underlay)?.ok_or_else(|| {
        Error::config(format!(
            "gatewayNetwork.vxlan.underlay: the node has no device named {underlay}"
        ))
    })?;
    let mut prefer = Vec::new();
    if let Some(IpAddr::V6(now)) = net
        .get_link(Side::Node, &vx.name)?
        .and_then(|st| st.vxlan)
        .and_then(|v| v.local)
    {
        prefer.push(now);
    }
    if let Some(IpAddr::V6(src)) = towards_remote {
        prefer.push(src);
    }
    pick_source_v6(&addresses, &prefer).map_err(|why| {
        let given = if vx.underlay.is_some() {
            String::new()
        } else {
            " (the device of the node's IPv6 default route)".to_string()
        };
        let tentative = addresses.iter().any(|a| a.global && a.tentative);
        Error::new(
            if tentative {
                code::TRY_AGAIN_LATER
            } else {
                code::INVALID_CONFIG
            },
            format!(
                "gatewayNetwork.vxlan.underlay: {underlay}{given} has no usable global IPv6 address to send the VXLAN from ({why}){}",
                if tentative {
                    "; its address is still tentative (duplicate address detection): try again in a moment"
                } else {
                    "; give the underlay a global IPv6 address, or use IPv4 remotes or group"
                }
            ),
        )
    })
}

/// Pure: the address [`vxlan_source_v6`] picks, or what the device has.
pub fn pick_source_v6(
    addresses: &[V6Address],
    prefer: &[Ipv6Addr],
) -> std::result::Result<Ipv6Addr, String> {
    let usable: Vec<&V6Address> = addresses
        .iter()
        .filter(|a| a.global && !a.tentative && !a.dadfailed && !a.deprecated)
        .collect();
    if let Some(p) = prefer.iter().find(|p| usable.iter().any(|a| a.addr == **p)) {
        return Ok(*p);
    }
    if let Some(a) = usable
        .iter()
        .find(|a| !a.temporary)
        .or_else(|| usable.first())
    {
        return Ok(a.addr);
    }
    if addresses.is_empty() {
        return Err("it has no IPv6 address at all".to_string());
    }
    let seen: Vec<String> = addresses.iter().map(V6Address::to_string).collect();
    Err(format!("it has {}", seen.join(", ")))
}

/// The infrastructure objects, in the order they are made.
pub fn infrastructure(gw: &GatewayNetwork, facts: &NodeFacts) -> Vec<Object> {
    let mut objects = vec![Object::Link {
        link: LinkSpec {
            name: gw.bridge.clone(),
            kind: LinkKind::Bridge,
            mtu: facts.mtu,
            master: None,
        },
    }];
    if let Some(vx) = &gw.vxlan {
        let group = match &vx.bum {
            Bum::Group(g) => Some(*g),
            Bum::Remotes(_) => None,
        };
        objects.push(Object::Link {
            link: LinkSpec {
                name: vx.name.clone(),
                kind: LinkKind::Vxlan {
                    vni: vx.vni,
                    group,
                    local: facts.local,
                    port: vx.port,
                    dev: facts.underlay.clone(),
                },
                mtu: facts.mtu,
                master: Some(gw.bridge.clone()),
            },
        });
        objects.extend(facts.remotes.iter().map(|dst| Object::Fdb {
            dev: vx.name.clone(),
            dst: *dst,
        }));
    }
    objects
}

/// Adds the gateway network's objects for this pod to `out`.
pub fn plan_into(config: &Config, pod: &Pod, out: &mut Plan) {
    let Some(gw) = &config.gateway else {
        return;
    };
    let facts = gw.node.clone().unwrap_or_default();
    out.groups.push(NodeGroup {
        schema: SCHEMA,
        key: INFRA_GROUP.to_string(),
        objects: infrastructure(gw, &facts),
        restore: BTreeMap::new(),
    });
    // Without node facts (DEL by plan) there is no interface to name.
    let ifname = if facts.ifname.is_empty() {
        match pod.addresses.iter().find_map(|a| a.interface.clone()) {
            Some(name) => name,
            None => return,
        }
    } else {
        facts.ifname.clone()
    };
    if let Some(mtu) = facts.mtu {
        if let Some(veth) = &facts.host_veth {
            out.pod_objects.push(Object::Mtu {
                side: Side::Node,
                ifname: veth.clone(),
                mtu,
                previous: None,
            });
        }
        out.pod_objects.push(Object::Mtu {
            side: Side::Pod,
            ifname: ifname.clone(),
            mtu,
            previous: None,
        });
    }
    match config.pod_args.role.unwrap_or(gw.role) {
        Role::Client => {
            let router_of = |family: Family| gw.routers.iter().find(|r| Family::of(r) == family);
            // `keep` CIDRs of a family without a router: the pod's routes
            // of that family are left alone anyway.
            for dst in gw
                .keep
                .iter()
                .filter(|d| router_of(Family::of_net(d)).is_some())
            {
                out.pod_objects.push(Object::PodRoute {
                    route: pod_route(*dst, Vec::new(), None),
                    previous: None,
                    keep: true,
                });
            }
            for dst in &gw.routes {
                // The config guarantees a router of each route's family.
                let Some(router) = router_of(Family::of_net(dst)) else {
                    continue;
                };
                let hop = NextHop {
                    via: *router,
                    dev: Some(ifname.clone()),
                    weight: 1,
                };
                out.pod_objects.push(Object::PodRoute {
                    route: pod_route(*dst, vec![hop], None),
                    previous: None,
                    keep: false,
                });
            }
        }
        Role::Router if gw.masquerade => {
            let has = |f: Family| {
                pod.addresses
                    .iter()
                    .any(|a| Family::of_net(&a.address) == f)
            };
            if has(Family::V4) || pod.addresses.is_empty() {
                out.pod_objects.push(pod_sysctl("net.ipv4.ip_forward"));
            }
            if has(Family::V6) {
                out.pod_objects
                    .push(pod_sysctl("net.ipv6.conf.all.forwarding"));
            }
            out.pod_objects.push(Object::PodMasquerade { ifname });
        }
        Role::Router | Role::None => {}
    }
}

fn pod_route(dst: ipnet::IpNet, nexthops: Vec<NextHop>, dev: Option<String>) -> RouteSpec {
    RouteSpec {
        dst,
        table: TABLE_MAIN,
        kind: RouteKind::Unicast,
        nexthops,
        dev,
        metric: None,
    }
}

fn pod_sysctl(key: &str) -> Object {
    Object::PodSysctl {
        key: key.to_string(),
        value: "1".to_string(),
        previous: None,
    }
}

/// The planned pod objects completed with what DEL must put back: from the
/// attachment's earlier record where it has the same object (a re-ADD must
/// not take gwsteer's own MTU or route for the pod's), else read now.
/// Objects with nothing to do (a keep route already in place) are dropped.
pub fn capture(
    kernel: &mut dyn Kernel,
    planned: &[Object],
    old: Option<&Record>,
) -> Result<Vec<Object>> {
    let mut out = Vec::with_capacity(planned.len());
    for obj in planned {
        if let Some(earlier) = old
            .into_iter()
            .flat_map(|r| &r.objects)
            .find(|o| o.planned() == *obj)
        {
            out.push(earlier.clone());
            continue;
        }
        if let Some(done) = kernel.capture(obj)? {
            out.push(done);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
