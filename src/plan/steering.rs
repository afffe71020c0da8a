//! Steering policies (CONTRACT 3.1): a policy's owned table routes as a
//! node group, and per `match` what the pod adds — `source`: per-pod rules;
//! `mark`/`connmark`: a member of the policy's firewall set, the policy's
//! chains and fwmark rules as node groups. Plus the masquerade exemption.

use ipnet::IpNet;

use super::{Facts, Note, Plan, Pod, gateway_routes, host, pod};
use crate::config::{Config, Match, Policy, Scope};
use crate::model::{
    Family, FwExemption, FwMember, FwObject, FwPolicy, FwScope, GroupKey, Marking, MemberSet,
    NodeGroup, Object, RouteSpec, RuleSpec, Side, TABLE_MAIN,
};

/// With marks, reverse-path checks must see the mark too.
pub const SRC_VALID_MARK: &str = "net.ipv4.conf.all.src_valid_mark";
/// With multipath gateways, skip nexthops whose neighbour is known dead.
pub const MULTIPATH_USE_NEIGH: &str = "net.ipv4.fib_multipath_use_neigh";
/// Policies that apply to this pod, in config order.
pub fn selected<'c>(config: &'c Config, pod: &Pod) -> Vec<&'c Policy> {
    config
        .steering
        .iter()
        .filter(|p| is_selected(config, p, pod))
        .collect()
}

/// Does `policy` apply to this pod: named by its cni-args, else of a
/// namespace the policy selects (all without `namespaces`)?
pub(super) fn is_selected(config: &Config, policy: &Policy, pod: &Pod) -> bool {
    match &config.pod_args.steering {
        Some(names) => names.contains(&policy.name),
        None => policy
            .namespaces
            .as_ref()
            .is_none_or(|set| pod.namespace.as_ref().is_some_and(|ns| set.contains(ns))),
    }
}

/// The routes of a policy's owned node table: one per destination, via
/// that family's gateways (several gateways: one multipath route). None
/// for a policy that steers on the pod side only.
pub fn table_routes(policy: &Policy) -> Vec<RouteSpec> {
    match policy.table {
        Some(table) => gateway_routes(table, &policy.gateways, &policy.destinations),
        None => Vec::new(),
    }
}

/// A `source` policy's rules for one source, a pod address (host prefix)
/// or, with `scope: "subnet"`, a pod subnet: one priority early
/// `from <src> to <exclude> lookup main` per excluded CIDR (and for a subnet
/// `from <subnet> iif lo lookup main`: the node's own address on the pod
/// bridge is in the subnet, and what the node itself sends must keep the
/// main table), then `from <src> lookup <table>`.
fn source_rules(policy: &Policy, table: u32, src: IpNet) -> Vec<RuleSpec> {
    let early = policy.priority - 1;
    let mut rules: Vec<RuleSpec> = policy
        .exclude
        .iter()
        .filter(|e| Family::of_net(e) == Family::of_net(&src))
        .map(|ex| rule_from(src, early, Some(*ex), None, TABLE_MAIN))
        .collect();
    if policy.scope == Scope::Subnet {
        rules.push(rule_from(src, early, None, Some("lo"), TABLE_MAIN));
    }
    rules.push(rule_from(src, policy.priority, None, None, table));
    rules
}

/// `from <src> [to <dst>] [iif <iif>] priority <priority> lookup <table>`.
fn rule_from(
    src: IpNet,
    priority: u32,
    dst: Option<IpNet>,
    iif: Option<&str>,
    table: u32,
) -> RuleSpec {
    RuleSpec {
        family: Family::of_net(&src),
        priority,
        src: Some(src),
        dst,
        fwmark: None,
        fwmask: None,
        iif: iif.map(str::to_string),
        table,
    }
}

/// The pod's addresses of the families `policy` steers.
fn served<'p>(policy: &Policy, pod: &'p Pod) -> impl Iterator<Item = &'p IpNet> {
    pod.addresses
        .iter()
        .map(|a| &a.address)
        .filter(|a| policy.serves(Family::of_net(a)))
}

/// The subnets of this pod's addresses that a `scope: "subnet"` policy
/// serves (the prefix prevResult gives them), each once.
fn pod_subnets(policy: &Policy, pod: &Pod, out: &mut Plan) -> Vec<IpNet> {
    let mut subnets: Vec<IpNet> = Vec::new();
    for addr in served(policy, pod) {
        let subnet = addr.trunc();
        if subnet.prefix_len() == subnet.max_prefix_len() {
            out.notes.push(Note::info(format!(
                "steering {}: prevResult gives {addr} as a host prefix, so its subnet's kernel objects are the pod's own",
                policy.name
            )));
        }
        if !subnets.contains(&subnet) {
            subnets.push(subnet);
        }
    }
    subnets
}

/// The subnet groups of a `scope: "subnet"` policy for this pod, one per
/// subnet of its addresses: `source`'s rules, or `mark`/`connmark`'s
/// range in the policy's subnet set.
fn subnet_groups(
    policy: &Policy,
    pod: &Pod,
    object: impl Fn(IpNet) -> Vec<Object>,
    out: &mut Plan,
) {
    for subnet in pod_subnets(policy, pod, out) {
        let key = GroupKey::Subnet(policy.name.clone(), subnet);
        if out.groups.iter().any(|g| g.key == key) {
            continue;
        }
        out.groups.push(NodeGroup::new(key, object(subnet)));
    }
}

/// A pod that opts out of a `scope: "subnet"` policy (cni-args) stays out
/// of it by per-pod exceptions: `source`, one rule per address (the main
/// table, one priority before the subnet's); `mark`/`connmark`, its
/// addresses in the policy's opt-out set — with the policy's group held,
/// so the set is there whichever pod of the subnet comes first.
pub(super) fn opt_out_plan(
    config: &Config,
    policy: &Policy,
    pod: &Pod,
    facts: &Facts,
    out: &mut Plan,
) {
    if policy.scope != Scope::Subnet {
        return;
    }
    if !matches!(policy.matcher, Match::Source) {
        marked_plan(config, policy, pod, facts, false, out);
        return;
    }
    for addr in served(policy, pod) {
        out.pod_objects.push(Object::node_rule(rule_from(
            host(addr),
            policy.priority - 1,
            None,
            None,
            TABLE_MAIN,
        )));
    }
}

/// What a policy takes on the node, that no other gwsteer network may
/// use: its table, and the priorities of its rules (`priority − 1` too for
/// a `source` policy's exclusion rules).
pub fn claims(policy: &Policy) -> Vec<GroupKey> {
    let mut out: Vec<GroupKey> = policy.table.map(GroupKey::TableClaim).into_iter().collect();
    out.extend(
        policy
            .rule_priorities()
            .into_iter()
            .map(GroupKey::PriorityClaim),
    );
    out
}

/// The fwmark rule that sends a mark/connmark policy's packets to its table
/// (on the node, or in the pod with the pod side's table).
pub(super) fn fwmark_rule(
    policy: &Policy,
    table: u32,
    family: Family,
    mark: u32,
    mask: Option<u32>,
) -> RuleSpec {
    RuleSpec {
        family,
        priority: policy.priority,
        src: None,
        dst: None,
        fwmark: Some(mark),
        fwmask: mask,
        iif: None,
        table,
    }
}

/// Everything one policy needs for this pod: per-pod objects and node groups.
pub(super) fn policy_plan(
    config: &Config,
    policy: &Policy,
    pod: &Pod,
    facts: &Facts,
    out: &mut Plan,
) {
    marked_plan(config, policy, pod, facts, true, out)
}

/// [`policy_plan`] for a pod the policy steers (`steered`), or one that
/// opts out of a `scope: "subnet"` mark/connmark policy.
fn marked_plan(
    config: &Config,
    policy: &Policy,
    pod: &Pod,
    facts: &Facts,
    steered: bool,
    out: &mut Plan,
) {
    let link = facts.pod_link.as_ref();
    out.notes.extend(pod::side_note(policy, link));
    if pod::side_of(policy, link) == Side::Pod {
        if let Some(link) = link {
            pod::policy_plan(policy, pod, link, out);
        }
        return;
    }
    // A node-side policy always has a table (config: required unless
    // side is "pod").
    let Some(table) = policy.table else {
        return;
    };
    let fw = facts.firewall;
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
    let mut subnet_members = None;
    let (mark, mask) = match policy.matcher {
        // With scope "subnet", its subnet groups follow the policy's
        // group (below): the table's routes first.
        Match::Source => {
            if policy.scope == Scope::Pod {
                out.pod_objects.extend(
                    served(policy, pod)
                        .flat_map(|a| source_rules(policy, table, host(a)))
                        .map(Object::node_rule),
                );
            }
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
        let scope = match policy.scope {
            Scope::Pod => FwScope::Pod,
            Scope::Subnet => FwScope::Subnet,
        };
        node.push(Object::firewall(
            backend,
            FwObject::Policy(FwPolicy {
                network: config.network.clone(),
                policy: policy.name.clone(),
                mark,
                mask: mask.unwrap_or(u32::MAX),
                marking,
                scope,
            }),
        ));
        node.extend(
            families
                .iter()
                .map(|f| Object::node_rule(fwmark_rule(policy, table, *f, mark, mask))),
        );
        let member = move |addr: IpNet, set: MemberSet| {
            Object::firewall(
                backend,
                FwObject::Member(FwMember {
                    network: config.network.clone(),
                    policy: policy.name.clone(),
                    addr,
                    set,
                }),
            )
        };
        // Per pod: its addresses in the member set. Per subnet: the
        // subnet's range, held by its pods (below), and the addresses of
        // the pods that opt out.
        let per_pod = match (scope, steered) {
            (FwScope::Pod, _) => Some(MemberSet::Pod),
            (FwScope::Subnet, true) => None,
            (FwScope::Subnet, false) => Some(MemberSet::OptOut),
        };
        if let Some(set) = per_pod {
            for addr in &pod.addresses {
                if families.contains(&Family::of_net(&addr.address)) {
                    out.pod_objects.push(member(host(&addr.address), set));
                }
            }
        }
        if scope == FwScope::Subnet && steered {
            subnet_members = Some(member);
        }
        if families.contains(&Family::V4) {
            sysctls.push(SRC_VALID_MARK);
        }
    }
    let mut group = NodeGroup::new(GroupKey::Policy(policy.name.clone()), node);
    group.claims = claims(policy);
    out.groups.push(group);
    if let Some(member) = subnet_members {
        subnet_groups(policy, pod, |net| vec![member(net, MemberSet::Subnet)], out);
    } else if policy.scope == Scope::Subnet && matches!(policy.matcher, Match::Source) {
        subnet_groups(
            policy,
            pod,
            |net| {
                source_rules(policy, table, net)
                    .into_iter()
                    .map(Object::node_rule)
                    .collect()
            },
            out,
        );
    }
    for key in sysctls {
        let group_key = GroupKey::Sysctl(key.to_string());
        if !out.groups.iter().any(|g| g.key == group_key) {
            out.groups
                .push(NodeGroup::new(group_key, vec![Object::sysctl(key, "1")]));
        }
    }
}

/// Node groups for the masquerade exemption: one per exempted CIDR, so pods
/// of different subnets never fight over one group's content.
pub(super) fn exemption_plan(config: &Config, pod: &Pod, facts: &Facts, out: &mut Plan) {
    let (Some(ex), Some(backend)) = (&config.masquerade_exemption, facts.firewall) else {
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
        let key = GroupKey::Exemption(cidr);
        out.groups.push(NodeGroup::new(
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
