//! Planning: a pure function from (config, pod) to the kernel objects the
//! attachment needs. No I/O, so every verb, the CLI and the unit tests see
//! the same answer.

use ipnet::IpNet;

use std::collections::BTreeMap;

use crate::cni::result::PodAddress;
use crate::config::{Config, Gateway, Match, Policy};
use crate::firewall::{Backend, FwExemption, FwMember, FwObject, FwPolicy, Marking};
use crate::objects::{Family, NextHop, Object, RouteKind, RouteSpec, RuleSpec, TABLE_MAIN};
use crate::store::NodeGroup;

/// With marks, reverse-path checks must see the mark too.
pub const SRC_VALID_MARK: &str = "net.ipv4.conf.all.src_valid_mark";
/// With multipath gateways, skip nexthops whose neighbour is known dead.
pub const MULTIPATH_USE_NEIGH: &str = "net.ipv4.fib_multipath_use_neigh";

/// Who the pod is, as far as planning cares.
#[derive(Debug, Clone, Default)]
pub struct Pod {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub addresses: Vec<PodAddress>,
}

/// What one attachment needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Objects that belong to this attachment alone.
    pub pod_objects: Vec<Object>,
    /// Shared node-level groups this attachment needs (made by the first
    /// holder, removed with the last).
    pub groups: Vec<NodeGroup>,
}

/// Key of the node group holding a policy's table routes.
pub fn policy_group_key(policy: &Policy) -> String {
    format!("{POLICY_GROUP_PREFIX}{}", policy.name)
}

const POLICY_GROUP_PREFIX: &str = "steering.";

/// Whether a node group is a steering policy's: its routes are the policy's
/// owned table, one per destination, and nothing per pod.
pub fn is_policy_group(key: &str) -> bool {
    key.starts_with(POLICY_GROUP_PREFIX)
}

/// Policies that apply to this pod, in config order.
pub fn selected<'c>(config: &'c Config, pod: &Pod) -> Vec<&'c Policy> {
    config
        .steering
        .iter()
        .filter(|p| match &config.pod_args.steering {
            Some(names) => names.contains(&p.name),
            None => p
                .namespaces
                .as_ref()
                .is_none_or(|set| pod.namespace.as_ref().is_some_and(|ns| set.contains(ns))),
        })
        .collect()
}

/// `addr` as a host prefix (/32, /128).
pub(crate) fn host(addr: &IpNet) -> IpNet {
    IpNet::new(addr.addr(), addr.max_prefix_len()).unwrap_or(*addr)
}

/// The routes of a policy's owned table: one per destination, via that
/// family's gateways (several gateways: one multipath route).
pub fn table_routes(policy: &Policy) -> Vec<RouteSpec> {
    gateway_routes(policy.table, &policy.gateways, &policy.destinations)
}

/// One route in `table` per destination, via the gateways of its family
/// (several: one multipath route). A policy's owned table, the VRF's table.
pub(crate) fn gateway_routes(
    table: u32,
    gateways: &[Gateway],
    destinations: &[IpNet],
) -> Vec<RouteSpec> {
    destinations
        .iter()
        .map(|dst| RouteSpec {
            dst: *dst,
            table,
            kind: RouteKind::Unicast,
            nexthops: gateways
                .iter()
                .filter(|g| Family::of(&g.via) == Family::of_net(dst))
                .map(|g| NextHop {
                    via: g.via,
                    dev: g.dev.clone(),
                    weight: g.weight,
                })
                .collect(),
            dev: None,
            metric: None,
        })
        .collect()
}

/// Per-pod rules of a `source` policy: `from <podIP> lookup <table>` and,
/// one priority earlier, `from <podIP> to <exclude> lookup main`.
fn source_rules(policy: &Policy, pod: &Pod) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for addr in &pod.addresses {
        let family = Family::of_net(&addr.address);
        if !policy.serves(family) {
            continue;
        }
        let src = host(&addr.address);
        for ex in policy
            .exclude
            .iter()
            .filter(|e| Family::of_net(e) == family)
        {
            rules.push(RuleSpec {
                family,
                priority: policy.priority - 1,
                src: Some(src),
                dst: Some(*ex),
                fwmark: None,
                fwmask: None,
                iif: None,
                table: TABLE_MAIN,
            });
        }
        rules.push(RuleSpec {
            family,
            priority: policy.priority,
            src: Some(src),
            dst: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            table: policy.table,
        });
    }
    rules
}

/// The fwmark rule that sends a mark/connmark policy's packets to its table.
fn fwmark_rule(policy: &Policy, family: Family, mark: u32, mask: Option<u32>) -> RuleSpec {
    RuleSpec {
        family,
        priority: policy.priority,
        src: None,
        dst: None,
        fwmark: Some(mark),
        fwmask: mask,
        iif: None,
        table: policy.table,
    }
}

pub(crate) fn group(key: String, objects: Vec<Object>) -> NodeGroup {
    NodeGroup {
        schema: crate::store::SCHEMA,
        key,
        objects,
        restore: BTreeMap::new(),
    }
}

/// Everything one policy needs for this pod: per-pod objects and node groups.
fn policy_plan(config: &Config, policy: &Policy, pod: &Pod, fw: Option<Backend>, out: &mut Plan) {
    let families: Vec<Family> = [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| policy.serves(*f))
        .filter(|f| {
            pod.addresses
                .iter()
                .any(|a| Family::of_net(&a.address) == *f)
        })
        .collect();
    if families.is_empty() {
        return;
    }
    let mut node: Vec<Object> = table_routes(policy)
        .into_iter()
        .map(Object::node_route)
        .collect();
    let mut sysctls = Vec::new();
    if policy.gateways_of(Family::V4).len() > 1 {
        sysctls.push(MULTIPATH_USE_NEIGH);
    }
    let (mark, mask) = match policy.matcher {
        Match::Source => {
            out.pod_objects
                .extend(source_rules(policy, pod).into_iter().map(Object::node_rule));
            (None, None)
        }
        Match::Mark { mark, mask } | Match::Connmark { mark, mask } => (Some(mark), mask),
    };
    if let (Some(mark), Some(backend)) = (mark, fw) {
        let marking = match &policy.matcher {
            Match::Connmark { .. } => Marking::Connmark {
                ingress: policy.ingress_interfaces.clone(),
            },
            _ => Marking::Mark {
                egress_to: policy.egress_to.clone(),
                exclude: policy.exclude.clone(),
            },
        };
        node.push(Object::firewall(
            backend,
            FwObject::Policy(FwPolicy {
                network: config.network.clone(),
                policy: policy.name.clone(),
                mark,
                mask: mask.unwrap_or(u32::MAX),
                marking,
            }),
        ));
        node.extend(
            families
                .iter()
                .map(|f| Object::node_rule(fwmark_rule(policy, *f, mark, mask))),
        );
        for addr in &pod.addresses {
            if families.contains(&Family::of_net(&addr.address)) {
                out.pod_objects.push(Object::firewall(
                    backend,
                    FwObject::Member(FwMember {
                        network: config.network.clone(),
                        policy: policy.name.clone(),
                        addr: host(&addr.address),
                    }),
                ));
            }
        }
        if families.contains(&Family::V4) {
            sysctls.push(SRC_VALID_MARK);
        }
    }
    out.groups.push(group(policy_group_key(policy), node));
    for key in sysctls {
        if !out.groups.iter().any(|g| g.key == format!("sysctl.{key}")) {
            out.groups.push(group(
                format!("sysctl.{key}"),
                vec![Object::sysctl(key, "1")],
            ));
        }
    }
}

/// Node groups for the masquerade exemption: one per exempted CIDR, so pods
/// of different subnets never fight over one group's content.
fn exemption_plan(config: &Config, pod: &Pod, fw: Option<Backend>, out: &mut Plan) {
    let (Some(ex), Some(backend)) = (&config.masquerade_exemption, fw) else {
        return;
    };
    let mut cidrs: Vec<IpNet> = if ex.cidrs.is_empty() {
        pod.addresses.iter().map(|a| a.address.trunc()).collect()
    } else {
        ex.cidrs.clone()
    };
    cidrs.sort();
    cidrs.dedup();
    for cidr in cidrs {
        let key = format!("exemption.{}", cidr.to_string().replace(['/', ':'], "_"));
        out.groups.push(group(
            key,
            vec![Object::firewall(
                backend,
                FwObject::Exemption(FwExemption {
                    network: config.network.clone(),
                    cidrs: vec![cidr],
                    chains: ex.chains.clone(),
                }),
            )],
        ));
    }
}

/// What this attachment needs. `fw` is the resolved firewall backend (only
/// consulted when the config needs a firewall).
pub fn plan(config: &Config, pod: &Pod, fw: Option<Backend>) -> Plan {
    let mut out = Plan::default();
    // The VRF's legs first: a steering policy may route via the VRF leg.
    crate::vrf::plan_into(config, pod, &mut out);
    for policy in selected(config, pod) {
        policy_plan(config, policy, pod, fw, &mut out);
    }
    exemption_plan(config, pod, fw, &mut out);
    crate::gateway::plan_into(config, pod, &mut out);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn config(steering: serde_json::Value, args: Option<serde_json::Value>) -> Config {
        let mut v =
            json!({"cniVersion": "1.0.0", "name": "net", "type": "gwsteer", "steering": steering});
        if let Some(a) = args {
            v["args"] = a;
        }
        Config::from_value(&v).unwrap()
    }

    /// A pod in namespace `ns` with `addrs` on `eth0` (also used by other
    /// modules' tests).
    pub(crate) fn pod(ns: &str, addrs: &[&str]) -> Pod {
        Pod {
            namespace: Some(ns.into()),
            name: Some("p".into()),
            addresses: addrs
                .iter()
                .map(|a| PodAddress {
                    address: a.parse().unwrap(),
                    gateway: None,
                    interface: Some("eth0".into()),
                })
                .collect(),
        }
    }

    fn plan0(c: &Config, p: &Pod) -> Plan {
        plan(c, p, None)
    }

    fn rule_texts(plan: &Plan) -> Vec<String> {
        plan.pod_objects.iter().map(|o| o.to_string()).collect()
    }

    #[test]
    fn source_policy_dual_stack_with_exclusions() {
        let c = config(
            json!([{"name": "oam", "table": 100,
                    "gateways": [{"via": "192.168.2.1"}, {"via": "fd00:2::1"}],
                    "exclude": ["10.244.0.0/16", "10.96.0.0/12", "fd00:244::/48"]}]),
            None,
        );
        let p = plan0(
            &c,
            &pod("default", &["10.244.1.5/24", "fd00:244:0:1::5/64"]),
        );
        assert_eq!(
            rule_texts(&p),
            vec![
                "inet rule 999: from 10.244.1.5 to 10.244.0.0/16 lookup main",
                "inet rule 999: from 10.244.1.5 to 10.96.0.0/12 lookup main",
                "inet rule 1000: from 10.244.1.5 lookup 100",
                "inet6 rule 999: from fd00:244:0:1::5 to fd00:244::/48 lookup main",
                "inet6 rule 1000: from fd00:244:0:1::5 lookup 100",
            ]
        );
        assert_eq!(p.groups.len(), 1);
        let routes: Vec<String> = p.groups[0].objects.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            routes,
            vec![
                "inet route default table 100 via 192.168.2.1",
                "inet6 route default table 100 via fd00:2::1",
            ]
        );
    }

    #[test]
    fn several_gateways_make_one_multipath_route_per_destination() {
        let c = config(
            json!([{"name": "lb", "table": 1000000, "priority": 20,
                    "gateways": [{"via": "172.28.4.130", "dev": "eth1"}, {"via": "172.28.4.131", "weight": 3}],
                    "destinations": ["0.0.0.0/0", "198.51.100.0/24"]}]),
            None,
        );
        let p = plan0(&c, &pod("default", &["10.244.1.5/24", "fd00::5/64"]));
        // The pod's IPv6 address is not steered: the policy has no IPv6 gateway.
        assert_eq!(
            rule_texts(&p),
            vec!["inet rule 20: from 10.244.1.5 lookup 1000000"]
        );
        let routes: Vec<String> = p.groups[0].objects.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            routes,
            vec![
                "inet route default table 1000000 nexthop via 172.28.4.130 dev eth1 weight 1 nexthop via 172.28.4.131 weight 3",
                "inet route 198.51.100.0/24 table 1000000 nexthop via 172.28.4.130 dev eth1 weight 1 nexthop via 172.28.4.131 weight 3",
            ]
        );
    }

    #[test]
    fn namespaces_select_pods() {
        let c = config(
            json!([{"name": "oam", "table": 100, "gateways": [{"via": "192.168.2.1"}],
                    "namespaces": ["oam"]}]),
            None,
        );
        assert!(
            plan0(&c, &pod("default", &["10.0.0.5/24"]))
                .pod_objects
                .is_empty()
        );
        assert_eq!(
            plan0(&c, &pod("oam", &["10.0.0.5/24"])).pod_objects.len(),
            1
        );
        assert!(plan0(&c, &Pod::default()).pod_objects.is_empty());
    }

    #[test]
    fn pod_args_opt_in_and_out() {
        let policies = json!([
            {"name": "a", "table": 100, "gateways": [{"via": "192.168.2.1"}], "namespaces": ["x"]},
            {"name": "b", "table": 101, "gateways": [{"via": "192.168.3.1"}]}
        ]);
        let opt_in = config(
            policies.clone(),
            Some(json!({"cni": {"gwsteer": {"steering": ["a"]}}})),
        );
        let p = plan0(&opt_in, &pod("default", &["10.0.0.5/24"]));
        assert_eq!(
            rule_texts(&p),
            vec!["inet rule 1000: from 10.0.0.5 lookup 100"]
        );
        let opt_out = config(
            policies.clone(),
            Some(json!({"cni": {"gwsteer": {"steering": []}}})),
        );
        assert_eq!(
            plan0(&opt_out, &pod("x", &["10.0.0.5/24"])),
            Plan::default()
        );
        let default = config(policies, None);
        assert_eq!(
            plan0(&default, &pod("default", &["10.0.0.5/24"]))
                .groups
                .len(),
            1
        );
    }

    fn texts(objs: &[Object]) -> Vec<String> {
        objs.iter().map(|o| o.to_string()).collect()
    }

    #[test]
    fn connmark_policy_is_set_membership_per_pod() {
        let c = config(
            json!([{"name": "oam", "table": 100, "match": "connmark", "mark": "0x14",
                    "ingressInterfaces": ["eth-b"],
                    "gateways": [{"via": "192.168.2.1"}, {"via": "fd00:2::1"}]}]),
            None,
        );
        let p = plan(
            &c,
            &pod("default", &["10.244.1.5/24", "fd00:244:0:1::5/64"]),
            Some(Backend::Nftables),
        );
        assert_eq!(
            texts(&p.pod_objects),
            vec![
                "nftables firewall member 10.244.1.5 of net/oam",
                "nftables firewall member fd00:244:0:1::5 of net/oam",
            ]
        );
        let keys: Vec<&str> = p.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["steering.oam", "sysctl.net.ipv4.conf.all.src_valid_mark"]
        );
        assert_eq!(
            texts(&p.groups[0].objects),
            vec![
                "inet route default table 100 via 192.168.2.1",
                "inet6 route default table 100 via fd00:2::1",
                "nftables firewall policy net/oam mark 0x14 (connmark, ingress eth-b)",
                "inet rule 1000: from all fwmark 0x14 lookup 100",
                "inet6 rule 1000: from all fwmark 0x14 lookup 100",
            ]
        );
        // A second pod plans the very same node groups: nothing node-level grows per pod.
        let q = plan(
            &c,
            &pod("default", &["10.244.1.6/24"]),
            Some(Backend::Nftables),
        );
        assert_eq!(q.groups[0].objects[2], p.groups[0].objects[2]);
        assert_eq!(q.groups[0].objects[3], p.groups[0].objects[3]);
        assert_eq!(q.pod_objects.len(), 1);
    }

    #[test]
    fn mark_policy_carries_egress_and_exclusions_into_the_firewall() {
        let c = config(
            json!([{"name": "egress", "table": 200, "match": "mark", "mark": "0x100", "mask": "0xff00",
                    "egressTo": ["198.51.100.0/24"], "exclude": ["10.244.0.0/16"],
                    "gateways": [{"via": "192.168.2.1"}, {"via": "192.168.2.2"}]}]),
            None,
        );
        let p = plan(
            &c,
            &pod("default", &["10.244.1.5/24"]),
            Some(Backend::Nftables),
        );
        assert_eq!(
            texts(&p.pod_objects),
            vec!["nftables firewall member 10.244.1.5 of net/egress"]
        );
        let node = texts(&p.groups[0].objects);
        assert!(
            node.contains(
                &"nftables firewall policy net/egress mark 0x100/0xff00 (mark, to 1 cidr(s))"
                    .to_string()
            ),
            "{node:?}"
        );
        assert!(
            node.contains(&"inet rule 1000: from all fwmark 0x100/0xff00 lookup 200".to_string()),
            "{node:?}"
        );
        let keys: Vec<&str> = p.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "steering.egress",
                "sysctl.net.ipv4.fib_multipath_use_neigh",
                "sysctl.net.ipv4.conf.all.src_valid_mark"
            ]
        );
    }

    #[test]
    fn exemption_groups_follow_the_pod_subnets() {
        let mut v = json!({"cniVersion": "1.0.0", "name": "gw", "masqueradeExemption": {"chains": ["KIND-MASQ-AGENT"]}});
        let c = Config::from_value(&v).unwrap();
        let p = plan(
            &c,
            &pod("default", &["192.168.50.7/24", "fd00:50::7/64"]),
            Some(Backend::Nftables),
        );
        assert!(p.pod_objects.is_empty());
        let keys: Vec<&str> = p.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["exemption.192.168.50.0_24", "exemption.fd00_50___64"]
        );
        assert_eq!(
            texts(&p.groups[0].objects),
            vec![
                "nftables masquerade exemption gw for 192.168.50.0/24 (RETURN in KIND-MASQ-AGENT)"
            ]
        );
        v["masqueradeExemption"] = json!({"cidrs": ["192.168.50.0/24"]});
        let c = Config::from_value(&v).unwrap();
        let p = plan(
            &c,
            &pod("default", &["192.168.50.7/24", "fd00:50::7/64"]),
            Some(Backend::Nftables),
        );
        assert_eq!(p.groups.len(), 1);
        // No backend resolved (firewallBackend none is refused at config time): nothing planned.
        assert!(
            plan(&c, &pod("default", &["192.168.50.7/24"]), None)
                .groups
                .is_empty()
        );
    }
}
