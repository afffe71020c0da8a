//! The gateway network (CONTRACT 3.2): a host bridge, optionally joined to
//! the other nodes' by a VXLAN, that client pods use to reach a router pod.
//!
//! [`plan_into`]: the infrastructure group (bridge, VXLAN, FDB entries; it
//! stays when its last holder goes, until `gwsteer cleanup`) and the pod's
//! own objects: MTUs of both veth ends; for a client, the `keep` routes and
//! the `routes` via the router; for a router, forwarding and the masquerade
//! table in the pod. What only the node can say (underlay, MTU, which
//! `remotes` are this node's own, the host end of the pod's veth) comes in
//! as [`GatewayFacts`]; what DEL puts back is read by `engine::capture`.

use std::net::IpAddr;

use super::{Facts, Plan, Pod};
use crate::config::gateway::{Bum, GatewayNetwork};
use crate::config::{Config, Role};
use crate::model::{
    Family, GroupKey, LinkKind, LinkSpec, NextHop, NodeGroup, Object, RouteKind, RouteSpec, Side,
    TABLE_MAIN,
};

/// What the node says that a gateway network's plan needs (collected by
/// the `facts` module).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayFacts {
    /// The pod's interface on this network (`CNI_IFNAME`).
    pub ifname: String,
    /// The host end of the pod's veth (from prevResult), if the primary said.
    pub host_veth: Option<String>,
    /// The VXLAN's underlay device (resolved from the default route if not given).
    pub underlay: Option<String>,
    /// The MTU for the VXLAN, bridge, host veth and pod interface; `None`:
    /// leave MTUs alone.
    pub mtu: Option<u32>,
    /// `remotes` less this node's own addresses.
    pub remotes: Vec<IpAddr>,
    /// The VXLAN's source address: a global IPv6 address of the underlay
    /// over an IPv6 underlay (it also makes the VXLAN an IPv6 one); `None`
    /// over IPv4, where the kernel picks the source by route.
    pub local: Option<IpAddr>,
}

/// The infrastructure objects, in the order they are made.
pub fn infrastructure(gw: &GatewayNetwork, facts: &GatewayFacts) -> Vec<Object> {
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
pub fn plan_into(config: &Config, pod: &Pod, facts: &Facts, out: &mut Plan) {
    let Some(gw) = &config.gateway else {
        return;
    };
    let facts = facts.gateway.clone().unwrap_or_default();
    out.groups.push(NodeGroup::new(
        GroupKey::GatewayInfra,
        infrastructure(gw, &facts),
    ));
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

#[cfg(test)]
mod tests;
