//! The `vrf` section (CONTRACT 3.3) at run time.
//!
//! - [`infrastructure`] (pure): the node group `infra.vrf.<name>`, which
//!   stays until `gwsteer cleanup` (CONTRACT 4): the VRF device bound to its
//!   table, the unreachable defaults that close the table, the veth legs
//!   (host leg in the default VRF, VRF leg enslaved) with their addresses,
//!   `accept_local` on the VRF leg (below), the uplinks enslaved (below),
//!   and the `gateways` routes in the VRF table.
//! - [`plan_into`] (pure): the leaks, routes in the VRF table back to the
//!   default VRF via the host leg: `pod` — a /32 or /128 per address of a
//!   steered pod, the pod's own objects, gone with its DEL; `cidr` — the
//!   `podCidrs`, a node group `vrf.<name>.leak` that goes with the last
//!   attachment.
//! - `masquerade`: a node group `vrf.<name>.masquerade` with the nftables
//!   table of the kernel layer (`nft::vrf_nat`; conntrack zones), gone with the last pod.
//! - [`admit`] / [`status`]: a kernel without VRF gets 103 (ADD) or 50
//!   (STATUS) naming `CONFIG_NET_VRF`.
//!
//! Uplinks: enslaving cycles the link, which drops its IPv6 addresses and
//! the routes through it. Before the first enslaving, the group keeps what
//! the uplink had (addresses, main-table routes not the kernel's) in its
//! `restore`; gwsteer then gives the addresses back and puts the routes in
//! the VRF table, and on cleanup releases the uplink and puts both back in
//! the default VRF.
//!
//! The local-table quirk. The kernel's VRF guide moves the `local` table's
//! rule from priority 0 to after the l3mdev rule (1000). gwsteer does not:
//! steering rules sit at 1000 and up, and with `local` after them a pod's
//! traffic to the node's own addresses would be steered away. With `local`
//! at 0, a packet that enters the VRF leg from the host leg has a source
//! that the local table calls the node's own, and IPv4 drops it as a
//! martian (not even ARP between the legs works). gwsteer sets
//! `net.ipv4.conf.<vrf leg>.accept_local = 1` instead: only that device
//! accepts a local source, and the rules are left alone.

use ipnet::IpNet;

use super::{Plan, Pod, gateway_routes, host};
use crate::config::Config;
use crate::config::vrf::{Leak, Vrf};
use crate::model::{Family, GroupKey, NextHop, NodeGroup, Object, RouteKind, RouteSpec};
use crate::model::{LinkKind, LinkSpec};

/// The metric of the unreachable defaults: the largest the kernel's VRF
/// guide uses, so that any default route an operator adds wins.
pub const UNREACHABLE_METRIC: u32 = 4_278_198_272;

fn link(name: &str, kind: LinkKind, master: Option<&str>) -> Object {
    Object::Link {
        link: LinkSpec {
            name: name.to_string(),
            kind,
            mtu: None,
            master: master.map(str::to_string),
        },
    }
}

/// A route in the VRF table back to the default VRF: via the host leg's
/// address of its family, out of the VRF leg. `None` when the legs have no
/// address of that family.
fn leak_route(vrf: &Vrf, dst: IpNet) -> Option<Object> {
    let via = vrf.host_leg.address_of(Family::of_net(&dst))?.addr();
    Some(Object::node_route(RouteSpec {
        dst,
        table: vrf.table,
        kind: RouteKind::Unicast,
        nexthops: vec![NextHop {
            via,
            dev: Some(vrf.vrf_leg.name.clone()),
            weight: 1,
        }],
        dev: None,
        metric: None,
    }))
}

/// The infrastructure objects, in the order they are made (removed in reverse).
pub fn infrastructure(vrf: &Vrf) -> Vec<Object> {
    let mut objects = vec![link(&vrf.name, LinkKind::Vrf { table: vrf.table }, None)];
    if vrf.unreachable_default {
        for dst in ["0.0.0.0/0", "::/0"] {
            objects.push(Object::node_route(RouteSpec {
                dst: dst.parse().expect("a default CIDR"),
                table: vrf.table,
                kind: RouteKind::Unreachable,
                nexthops: Vec::new(),
                dev: None,
                metric: Some(UNREACHABLE_METRIC),
            }));
        }
    }
    // Uplinks before the gateway routes, which go via their networks.
    objects.extend(vrf.uplinks.iter().map(|dev| Object::Uplink {
        dev: dev.clone(),
        vrf: vrf.name.clone(),
        table: vrf.table,
    }));
    let (host, leg) = (&vrf.host_leg, &vrf.vrf_leg);
    objects.push(link(
        &host.name,
        LinkKind::Veth {
            peer: leg.name.clone(),
        },
        None,
    ));
    objects.push(link(
        &leg.name,
        LinkKind::Veth {
            peer: host.name.clone(),
        },
        Some(&vrf.name),
    ));
    if leg.address_of(Family::V4).is_some() {
        objects.push(Object::sysctl(
            &format!("net.ipv4.conf.{}.accept_local", leg.name),
            "1",
        ));
    }
    for l in [host, leg] {
        objects.extend(l.addresses.iter().map(|a| Object::Address {
            dev: l.name.clone(),
            addr: *a,
        }));
    }
    objects.extend(
        gateway_routes(vrf.table, &vrf.gateways, &vrf.destinations)
            .into_iter()
            .map(Object::node_route),
    );
    objects
}

/// Whether the VRF leaks this pod's addresses (`leak: pod`): pods that a
/// steering policy selects; with no steering policies at all, every pod of
/// the network (its traffic reaches the VRF some other way).
fn steered(config: &Config, pod: &Pod) -> bool {
    config.steering.is_empty() || !crate::plan::selected(config, pod).is_empty()
}

/// Adds the VRF's groups and this pod's leak routes to `out`.
pub fn plan_into(config: &Config, pod: &Pod, out: &mut Plan) {
    let Some(vrf) = &config.vrf else {
        return;
    };
    out.groups.push(NodeGroup::new(
        GroupKey::VrfInfra(vrf.name.clone()),
        infrastructure(vrf),
    ));
    match &vrf.leak {
        Leak::None => {}
        Leak::Pod => {
            if steered(config, pod) {
                out.pod_objects.extend(
                    pod.addresses
                        .iter()
                        .filter_map(|a| leak_route(vrf, host(&a.address))),
                );
            }
        }
        Leak::Cidr(cidrs) => out.groups.push(NodeGroup::new(
            GroupKey::VrfLeak(vrf.name.clone()),
            cidrs.iter().filter_map(|c| leak_route(vrf, *c)).collect(),
        )),
    }
    if vrf.masquerade {
        out.groups.push(NodeGroup::new(
            GroupKey::VrfMasquerade(vrf.name.clone()),
            vec![Object::VrfMasquerade {
                vrf: vrf.name.clone(),
                leg: vrf.vrf_leg.name.clone(),
                uplinks: vrf.uplinks.clone(),
            }],
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plan::tests::pod;

    fn config(steering: Value, vrf: Value) -> Config {
        Config::from_value(&json!({
            "cniVersion": "1.0.0", "name": "net", "type": "gwsteer",
            "steering": steering, "vrf": vrf
        }))
        .unwrap()
    }

    fn vrf(extra: Value) -> Value {
        let mut v = json!({
            "name": "vrf-oam", "table": 10,
            "legs": {
                "host": {"name": "gl-host", "addresses": ["192.169.1.1/30", "fd00:169::1/64"]},
                "vrf": {"name": "gl-vrf", "addresses": ["192.169.1.2/30", "fd00:169::2/64"]}
            },
            "gateways": [{"via": "10.30.0.2"}, {"via": "10.30.0.3", "weight": 2}]
        });
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v[k] = x;
            }
        }
        v
    }

    fn texts(objects: &[Object]) -> Vec<String> {
        objects.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn infrastructure_in_order() {
        let c = config(json!([]), vrf(json!({})));
        let plan = crate::plan::plan(
            &c,
            &pod("a", &["10.244.1.5/24"]),
            &crate::plan::Facts::default(),
        );
        let infra = &plan.groups[0];
        assert_eq!(infra.key.to_string(), "infra.vrf.vrf-oam");
        assert!(infra.key.is_infrastructure());
        let t = texts(&infra.objects);
        assert_eq!(t[0], "link vrf-oam type vrf table 10");
        assert_eq!(
            t[1],
            "inet route unreachable default table 10 metric 4278198272"
        );
        assert_eq!(
            t[2],
            "inet6 route unreachable default table 10 metric 4278198272"
        );
        assert_eq!(t[3], "link gl-host type veth peer gl-vrf");
        assert_eq!(t[4], "link gl-vrf type veth peer gl-host master vrf-oam");
        assert_eq!(t[5], "sysctl net.ipv4.conf.gl-vrf.accept_local = 1");
        assert_eq!(
            t[6..10],
            [
                "address 192.169.1.1/30 dev gl-host",
                "address fd00:169::1/64 dev gl-host",
                "address 192.169.1.2/30 dev gl-vrf",
                "address fd00:169::2/64 dev gl-vrf"
            ]
        );
        // One multipath route for the IPv4 default (only IPv4 gateways).
        assert_eq!(t.len(), 11, "{t:?}");
        let Object::Route { spec, .. } = &infra.objects[10] else {
            panic!("{t:?}")
        };
        assert_eq!(spec.table, 10);
        assert_eq!(spec.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
        assert_eq!(spec.nexthops.len(), 2);
        assert_eq!(spec.nexthops[1].weight, 2);
    }

    #[test]
    fn unreachable_default_can_be_left_out() {
        let c = config(json!([]), vrf(json!({"unreachableDefault": false})));
        let infra = infrastructure(c.vrf.as_ref().unwrap());
        assert!(!texts(&infra).iter().any(|t| t.contains("unreachable")));
    }

    #[test]
    fn pod_leaks_are_host_routes_via_the_host_leg() {
        let c = config(json!([]), vrf(json!({})));
        let plan = crate::plan::plan(
            &c,
            &pod("a", &["10.244.1.5/24", "fd00:244::5/64"]),
            &crate::plan::Facts::default(),
        );
        let leaks: Vec<&RouteSpec> = plan
            .pod_objects
            .iter()
            .filter_map(|o| match o {
                Object::Route { spec, .. } => Some(spec),
                _ => None,
            })
            .collect();
        assert_eq!(leaks.len(), 2);
        assert_eq!(leaks[0].dst, "10.244.1.5/32".parse::<IpNet>().unwrap());
        assert_eq!(leaks[0].table, 10);
        assert_eq!(
            leaks[0].nexthops[0].via,
            "192.169.1.1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(leaks[0].nexthops[0].dev.as_deref(), Some("gl-vrf"));
        assert_eq!(leaks[1].dst, "fd00:244::5/128".parse::<IpNet>().unwrap());
        assert_eq!(
            leaks[1].nexthops[0].via,
            "fd00:169::1".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn only_steered_pods_leak_when_there_are_policies() {
        let steering = json!([{
            "name": "oam", "table": 100, "namespaces": ["oam"],
            "gateways": [{"via": "192.169.1.2", "dev": "gl-host"}]
        }]);
        let c = config(steering, vrf(json!({})));
        let leaks = |ns: &str| {
            crate::plan::plan(
                &c,
                &pod(ns, &["10.244.1.5/24"]),
                &crate::plan::Facts::default(),
            )
            .pod_objects
            .iter()
            .filter(|o| matches!(o, Object::Route { spec, .. } if spec.table == 10))
            .count()
        };
        assert_eq!(leaks("oam"), 1);
        assert_eq!(leaks("other"), 0);
    }

    #[test]
    fn cidr_leak_is_a_node_group_and_leak_none_has_nothing() {
        let c = config(
            json!([]),
            vrf(json!({"leak": "cidr", "podCidrs": ["10.244.0.0/16"]})),
        );
        let plan = crate::plan::plan(
            &c,
            &pod("a", &["10.244.1.5/24"]),
            &crate::plan::Facts::default(),
        );
        assert!(plan.pod_objects.is_empty());
        assert_eq!(plan.groups[1].key.to_string(), "vrf.vrf-oam.leak");
        assert!(!plan.groups[1].key.is_infrastructure());
        assert_eq!(plan.groups[1].objects.len(), 1);
        let c = config(json!([]), vrf(json!({"leak": "none"})));
        let plan = crate::plan::plan(
            &c,
            &pod("a", &["10.244.1.5/24"]),
            &crate::plan::Facts::default(),
        );
        assert!(plan.pod_objects.is_empty());
        assert_eq!(plan.groups.len(), 1);
    }

    #[test]
    fn the_vrf_table_is_not_owned() {
        let c = config(
            json!([{"name": "oam", "table": 100, "gateways": [{"via": "192.169.1.2"}]}]),
            vrf(json!({"leak": "cidr", "podCidrs": ["10.244.0.0/16"]})),
        );
        let plan = crate::plan::plan(
            &c,
            &pod("a", &["10.244.1.5/24"]),
            &crate::plan::Facts::default(),
        );
        let owned = crate::engine::audit::owned_tables(&plan.groups);
        assert!(owned.contains(&100) && !owned.contains(&10), "{owned:?}");
    }

    #[test]
    fn masquerade_is_a_node_group_that_goes_with_the_last_pod() {
        let c = config(
            json!([]),
            vrf(json!({"masquerade": true, "uplinks": ["eth1"]})),
        );
        let plan = crate::plan::plan(
            &c,
            &pod("a", &["10.244.1.5/24"]),
            &crate::plan::Facts::default(),
        );
        let g = plan.groups.last().unwrap();
        assert_eq!(g.key.to_string(), "vrf.vrf-oam.masquerade");
        assert!(!g.key.is_infrastructure());
        assert_eq!(
            g.objects,
            vec![Object::VrfMasquerade {
                vrf: "vrf-oam".into(),
                leg: "gl-vrf".into(),
                uplinks: vec!["eth1".into()]
            }]
        );
    }

    #[test]
    fn uplinks_are_enslaved_before_the_legs_and_gateway_routes() {
        let c = config(json!([]), vrf(json!({"uplinks": ["eth1", "eth2"]})));
        let t = texts(&infrastructure(c.vrf.as_ref().unwrap()));
        assert_eq!(t[3], "uplink eth1 master vrf-oam (routes to table 10)");
        assert_eq!(t[4], "uplink eth2 master vrf-oam (routes to table 10)");
        assert_eq!(t[5], "link gl-host type veth peer gl-vrf");
        assert!(t.last().unwrap().starts_with("inet route default table 10"));
    }
}
