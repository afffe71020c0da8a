//! Planning: a pure function from (config, pod) to the kernel objects the
//! attachment needs. No I/O, so every verb, the CLI and the unit tests see
//! the same answer.

use ipnet::IpNet;

use crate::cni::result::PodAddress;
use crate::config::{Config, Match, Policy};
use crate::objects::{Family, NextHop, Object, RouteKind, RouteSpec, RuleSpec, TABLE_MAIN};
use crate::store::NodeGroup;

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
    format!("steering.{}", policy.name)
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

fn host(addr: &IpNet) -> IpNet {
    IpNet::new(addr.addr(), addr.max_prefix_len()).unwrap_or(*addr)
}

/// The routes of a policy's owned table: one per destination, via that
/// family's gateways (several gateways: one multipath route).
pub fn table_routes(policy: &Policy) -> Vec<RouteSpec> {
    policy
        .destinations
        .iter()
        .map(|dst| RouteSpec {
            dst: *dst,
            table: policy.table,
            kind: RouteKind::Unicast,
            nexthops: policy
                .gateways_of(Family::of_net(dst))
                .into_iter()
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

pub fn plan(config: &Config, pod: &Pod) -> Plan {
    let mut out = Plan::default();
    for policy in selected(config, pod) {
        let rules = match policy.matcher {
            Match::Source => source_rules(policy, pod),
            // Rejected at config time until the firewall layer lands.
            Match::Mark { .. } | Match::Connmark { .. } => Vec::new(),
        };
        if rules.is_empty() {
            continue;
        }
        out.pod_objects
            .extend(rules.into_iter().map(Object::node_rule));
        out.groups.push(NodeGroup {
            schema: crate::store::SCHEMA,
            key: policy_group_key(policy),
            objects: table_routes(policy)
                .into_iter()
                .map(Object::node_route)
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
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

    fn pod(ns: &str, addrs: &[&str]) -> Pod {
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
        let p = plan(
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
        let p = plan(&c, &pod("default", &["10.244.1.5/24", "fd00::5/64"]));
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
            plan(&c, &pod("default", &["10.0.0.5/24"]))
                .pod_objects
                .is_empty()
        );
        assert_eq!(plan(&c, &pod("oam", &["10.0.0.5/24"])).pod_objects.len(), 1);
        assert!(plan(&c, &Pod::default()).pod_objects.is_empty());
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
        let p = plan(&opt_in, &pod("default", &["10.0.0.5/24"]));
        assert_eq!(
            rule_texts(&p),
            vec!["inet rule 1000: from 10.0.0.5 lookup 100"]
        );
        let opt_out = config(
            policies.clone(),
            Some(json!({"cni": {"gwsteer": {"steering": []}}})),
        );
        assert_eq!(plan(&opt_out, &pod("x", &["10.0.0.5/24"])), Plan::default());
        let default = config(policies, None);
        assert_eq!(
            plan(&default, &pod("default", &["10.0.0.5/24"]))
                .groups
                .len(),
            1
        );
    }
}
