//! Planning: a pure function from (config, pod, facts) to the kernel objects
//! the attachment needs. No I/O: what only the node can say (the firewall
//! backend, the gateway network's underlay and MTU) comes in as [`Facts`],
//! collected by the `facts` module; the config is never rewritten. So every
//! verb, the CLI and the unit tests see the same answer.
//!
//! One file per feature: [`steering`] (CONTRACT 3.1 and the masquerade
//! exemption), [`pod`] (3.1's `side`: steering inside the pod),
//! [`gateway`] (3.2), [`vrf`] (3.3).

pub mod gateway;
pub mod pod;
pub mod steering;
pub mod vrf;

use ipnet::IpNet;

use crate::cni::result::PodAddress;
use crate::config::{Config, Gateway};
use crate::model::{Backend, Family, NextHop, NodeGroup, Object, RouteKind, RouteSpec};

pub use gateway::GatewayFacts;
pub use pod::{PodLink, mark_conflict};
pub use steering::{MULTIPATH_USE_NEIGH, SRC_VALID_MARK, selected, table_routes};

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
    /// What the plan chose that a person should know: the side each
    /// policy acts on, and what it could not steer.
    pub notes: Vec<Note>,
}

/// Something the plan chose that a person should know; a `warning` when
/// the attachment may not be steered as meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub text: String,
}

impl Note {
    pub fn info(text: String) -> Note {
        Note {
            warning: false,
            text,
        }
    }

    pub fn warning(text: String) -> Note {
        Note {
            warning: true,
            text,
        }
    }
}

/// What the node says, collected by the `facts` module before planning.
/// `Facts::default()` (nothing known) is what DEL by plan and the unit tests
/// use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The firewall backend objects are made with, when the config needs one.
    pub firewall: Option<Backend>,
    /// The gateway network's node facts, when the config has one.
    pub gateway: Option<GatewayFacts>,
    /// The attachment's pod interface, when a policy selects the pod.
    pub pod_link: Option<PodLink>,
}

/// `addr` as a host prefix (/32, /128).
pub fn host(addr: &IpNet) -> IpNet {
    IpNet::new(addr.addr(), addr.max_prefix_len()).unwrap_or(*addr)
}

/// One route in `table` per destination, via the gateways of its family
/// (several: one multipath route). A policy's owned table, the VRF's table.
pub fn gateway_routes(table: u32, gateways: &[Gateway], destinations: &[IpNet]) -> Vec<RouteSpec> {
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

/// What this attachment needs.
pub fn plan(config: &Config, pod: &Pod, facts: &Facts) -> Plan {
    let mut out = Plan::default();
    // The VRF's legs first: a steering policy may route via the VRF leg.
    vrf::plan_into(config, pod, &mut out);
    for policy in &config.steering {
        if steering::is_selected(config, policy, pod) {
            steering::policy_plan(config, policy, pod, facts, &mut out);
        } else {
            steering::opt_out_plan(config, policy, pod, facts, &mut out);
        }
    }
    steering::exemption_plan(config, pod, facts, &mut out);
    gateway::plan_into(config, pod, facts, &mut out);
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

    fn nft() -> Facts {
        Facts {
            firewall: Some(Backend::Nftables),
            gateway: None,
            pod_link: None,
        }
    }

    fn plan0(c: &Config, p: &Pod) -> Plan {
        plan(c, p, &Facts::default())
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

    /// `scope: "subnet"`: no per-pod object, one group per pod subnet
    /// with the exclusions, the `iif lo` exception and the steering rule;
    /// two pods of one subnet plan the same group; a pod that opts out
    /// plans only its exception rules.
    #[test]
    fn subnet_scope_plans_subnet_groups_and_opt_out_exceptions() {
        let policy = json!([{"name": "oam", "table": 100, "scope": "subnet",
                "gateways": [{"via": "192.168.2.1"}, {"via": "fd00:2::1"}],
                "exclude": ["10.244.0.0/16"]}]);
        let c = config(policy.clone(), None);
        let p = plan0(
            &c,
            &pod("default", &["10.244.1.5/24", "fd00:244:0:1::5/64"]),
        );
        assert!(p.pod_objects.is_empty(), "{:?}", p.pod_objects);
        let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "steering.oam",
                "steering.oam.10.244.1.0_24",
                "steering.oam.fd00_244_0_1___64"
            ]
        );
        assert_eq!(
            texts(&p.groups[1].objects),
            [
                "inet rule 999: from 10.244.1.0/24 to 10.244.0.0/16 lookup main",
                "inet rule 999: from 10.244.1.0/24 iif lo lookup main",
                "inet rule 1000: from 10.244.1.0/24 lookup 100",
            ]
        );
        assert_eq!(
            texts(&p.groups[2].objects),
            [
                "inet6 rule 999: from fd00:244:0:1::/64 iif lo lookup main",
                "inet6 rule 1000: from fd00:244:0:1::/64 lookup 100",
            ]
        );
        // Another pod of the subnet: the very same groups.
        let q = plan0(&c, &pod("other", &["10.244.1.9/24", "fd00:244:0:1::9/64"]));
        assert_eq!(q.groups, p.groups);
        // Priority 999 is the policy's too (claimed without `exclude`).
        assert!(
            p.groups[0]
                .claims
                .contains(&crate::model::GroupKey::PriorityClaim(999))
        );
        // Opted out: one exception per address, no group.
        let out = config(policy, Some(json!({"cni": {"gwsteer": {"steering": []}}})));
        let o = plan0(
            &out,
            &pod("default", &["10.244.1.7/24", "fd00:244:0:1::7/64"]),
        );
        assert!(o.groups.is_empty());
        assert_eq!(
            rule_texts(&o),
            [
                "inet rule 999: from 10.244.1.7 lookup main",
                "inet6 rule 999: from fd00:244:0:1::7 lookup main",
            ]
        );
        // A pod-scope policy a pod opts out of plans nothing for it.
        let per_pod = config(
            json!([{"name": "oam", "table": 100, "gateways": [{"via": "192.168.2.1"}]}]),
            Some(json!({"cni": {"gwsteer": {"steering": []}}})),
        );
        assert_eq!(
            plan0(&per_pod, &pod("default", &["10.244.1.7/24"])),
            Plan::default()
        );
    }

    /// `scope: "subnet"` for connmark: no per-pod object, the policy's
    /// group (with a per-subnet policy) and one group per pod subnet holding
    /// the subnet's range; a pod that opts out holds the policy's group
    /// and puts its addresses in the opt-out set.
    #[test]
    fn subnet_scope_connmark_plans_subnet_ranges_and_opt_out_elements() {
        let policy = json!([{"name": "oam", "table": 100, "scope": "subnet",
                "match": "connmark", "mark": "0x14", "ingressInterfaces": ["eth-b"],
                "gateways": [{"via": "192.168.2.1"}, {"via": "fd00:2::1"}]}]);
        let c = config(policy.clone(), None);
        let addrs = ["10.244.1.5/24", "fd00:244:0:1::5/64"];
        let p = plan(&c, &pod("default", &addrs), &nft());
        assert!(p.pod_objects.is_empty(), "{:?}", p.pod_objects);
        let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "steering.oam",
                "steering.oam.10.244.1.0_24",
                "steering.oam.fd00_244_0_1___64",
                "sysctl.net.ipv4.conf.all.src_valid_mark",
            ]
        );
        let fw_policy = p.groups[0]
            .objects
            .iter()
            .find_map(|o| match o {
                Object::Firewall {
                    firewall: crate::model::FwObject::Policy(fp),
                    ..
                } => Some(fp.clone()),
                _ => None,
            })
            .expect("the policy's firewall object");
        assert_eq!(fw_policy.scope, crate::model::FwScope::Subnet);
        assert_eq!(
            texts(&p.groups[1].objects),
            ["nftables firewall subnet 10.244.1.0/24 of net/oam"]
        );
        assert_eq!(
            texts(&p.groups[2].objects),
            ["nftables firewall subnet fd00:244:0:1::/64 of net/oam"]
        );
        let q = plan(
            &c,
            &pod("other", &["10.244.1.9/24", "fd00:244:0:1::9/64"]),
            &nft(),
        );
        assert_eq!(q.groups, p.groups, "another pod of the subnet");

        let out = config(policy, Some(json!({"cni": {"gwsteer": {"steering": []}}})));
        let o = plan(
            &out,
            &pod("default", &["10.244.1.7/24", "fd00:244:0:1::7/64"]),
            &nft(),
        );
        let keys: Vec<String> = o.groups.iter().map(|g| g.key.to_string()).collect();
        assert_eq!(
            keys,
            ["steering.oam", "sysctl.net.ipv4.conf.all.src_valid_mark"]
        );
        assert_eq!(o.groups[0], p.groups[0], "the same policy group");
        assert_eq!(
            rule_texts(&o),
            [
                "nftables firewall opt-out 10.244.1.7 of net/oam",
                "nftables firewall opt-out fd00:244:0:1::7 of net/oam",
            ]
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
            &nft(),
        );
        assert_eq!(
            texts(&p.pod_objects),
            vec![
                "nftables firewall member 10.244.1.5 of net/oam",
                "nftables firewall member fd00:244:0:1::5 of net/oam",
            ]
        );
        let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
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
        let q = plan(&c, &pod("default", &["10.244.1.6/24"]), &nft());
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
        let p = plan(&c, &pod("default", &["10.244.1.5/24"]), &nft());
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
        let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
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
            &nft(),
        );
        assert!(p.pod_objects.is_empty());
        let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
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
            &nft(),
        );
        assert_eq!(p.groups.len(), 1);
        // No backend resolved (firewallBackend none is refused at config time): nothing planned.
        assert!(
            plan(&c, &pod("default", &["192.168.50.7/24"]), &Facts::default())
                .groups
                .is_empty()
        );
    }
}
