//! Steering inside the pod (`side`): for an attachment whose pod interface
//! reaches the node through no host-side peer (macvlan, ipvlan,
//! host-device, a VF), the reply must leave by that interface, so the
//! steering lives in the pod's namespace, where it leaves.
//!
//! Per policy and interface, in the pod: a table of gwsteer's holding the
//! interface's subnet and the policy's destinations via the gateway
//! (the policy's `gateways`, else prevResult's gateway of each address);
//! `source`: `from <address> lookup <table>` and the exclusions one
//! priority earlier; `connmark`: connections arriving on the interface
//! are marked, their replies get the mark and one fwmark rule sends them
//! to the table. The table id is [`table_id`]: the interface's index in
//! the pod makes it one no other attachment of the pod can have.

use super::{Facts, Note, Plan, Pod, host};
use crate::config::{Config, Match, Policy, SideChoice};
use crate::model::{Family, NextHop, Object, RouteKind, RouteSpec, RuleSpec, Side, TABLE_MAIN};

/// Pod-side table ids start here: 0x80000000 + 256 · ifindex + policy
/// index. Far above any table a person numbers by hand.
pub const POD_TABLE_BASE: u32 = 0x8000_0000;

/// What planning knows of the attachment's pod interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLink {
    pub ifname: String,
    /// Why the interface reaches the node through no host-side peer, if it
    /// does not (the reply can leave the pod by it directly, and only by
    /// it without a detour through the pod's primary interface).
    pub peerless: Option<String>,
    /// The interface's index in the pod's namespace, read when a policy may
    /// steer on the pod side.
    pub index: Option<u32>,
    /// gwsteer's fwmark rules already in the pod's namespace (any
    /// attachment's), read with the index when a selected policy is a
    /// `connmark` one: see [`mark_conflict`].
    pub fwmark_rules: Vec<RuleSpec>,
}

/// The side a policy steers this attachment on.
pub fn side_of(policy: &Policy, link: Option<&PodLink>) -> Side {
    match policy.side {
        SideChoice::Node => Side::Node,
        SideChoice::Pod => Side::Pod,
        SideChoice::Auto => {
            let peerless = link.is_some_and(|l| l.peerless.is_some());
            if peerless && !matches!(policy.matcher, Match::Mark { .. }) {
                Side::Pod
            } else {
                Side::Node
            }
        }
    }
}

/// The pod-side table of `policy` on the interface with index `ifindex`;
/// `None` past what 32 bits hold (an ifindex of 2²³ or more).
pub fn table_id(ifindex: u32, policy: &Policy) -> Option<u32> {
    if ifindex >= 1 << 23 {
        return None;
    }
    Some(POD_TABLE_BASE + (ifindex << 8) + policy.index as u32)
}

/// Why this attachment may not be made: a pod-side `connmark` policy whose
/// mark another attachment of the same pod already steers to a table of
/// its own. Both would mark their connections alike and the pod's first
/// fwmark rule would route the replies of both, one of them out of the
/// wrong interface. `None` when there is no such rule in the pod (or the
/// pod was not read); a re-ADD finds its own rule, in a table of its own
/// interface ([`table_id`]).
pub fn mark_conflict(config: &Config, pod: &Pod, facts: &Facts) -> Option<String> {
    let link = facts.pod_link.as_ref()?;
    let index = link.index?;
    config
        .steering
        .iter()
        .filter(|p| super::steering::is_selected(config, p, pod))
        .find_map(|policy| {
            let Match::Connmark { mark, mask } = policy.matcher else {
                return None;
            };
            if side_of(policy, Some(link)) != Side::Pod {
                return None;
            }
            // A table of this interface (any policy index: the config may
            // have reordered its policies) is this attachment's own.
            let own = table_id(index, policy)? & !0xff;
            let other = link
                .fwmark_rules
                .iter()
                .find(|r| r.table & !0xff != own && marks_meet(mark, mask, r))?;
            let under = mask.map(|m| format!("/{m:#x}")).unwrap_or_default();
            Some(format!(
                "steering {}: mark {mark:#x}{under} on {} is already steered in this pod to table {} by another attachment (its fwmark rule at priority {}); give each pod-side connmark attachment of a pod a mark of its own",
                policy.name, link.ifname, other.table, other.priority
            ))
        })
}

/// Would a packet that carries `mark` under `mask` (`None`: all 32 bits)
/// match the fwmark of rule `r`? Judged on the bits both masks cover.
fn marks_meet(mark: u32, mask: Option<u32>, r: &RuleSpec) -> bool {
    let Some(theirs) = r.fwmark else {
        return false;
    };
    let common = mask.unwrap_or(u32::MAX) & r.fwmask.unwrap_or(u32::MAX);
    common != 0 && mark & common == theirs & common
}

/// Why the policy acts on the side it does, for the record and the log;
/// `None` when there is nothing to say (a node-side policy on an
/// interface with a host-side peer).
pub fn side_note(policy: &Policy, link: Option<&PodLink>) -> Option<Note> {
    let link = link?;
    let name = &policy.name;
    let ifname = &link.ifname;
    match (side_of(policy, Some(link)), &link.peerless) {
        (Side::Pod, Some(why)) => Some(Note::info(format!(
            "steering {name}: on the pod side of {ifname} ({why})"
        ))),
        (Side::Pod, None) => Some(Note::info(format!(
            "steering {name}: on the pod side of {ifname} (side \"pod\")"
        ))),
        (Side::Node, Some(why)) => {
            let because = match policy.side {
                SideChoice::Node => "side \"node\"".to_string(),
                _ => "match \"mark\" steers on the node only".to_string(),
            };
            Some(Note::warning(format!(
                "steering {name}: on the node side for {ifname}, which has no host-side peer ({why}; {because}): replies rely on the detour out of the pod's primary interface, through the node and out of its uplink; strict rp_filter on the node or a primary's anti-spoofing drops them (side \"pod\" steers them inside the pod)"
            )))
        }
        (Side::Node, None) => None,
    }
}

/// Gateways of `family` for `addr` on the pod side: the policy's (their
/// `dev` defaults to the interface), else prevResult's for the address.
fn nexthops(
    policy: &Policy,
    ifname: &str,
    family: Family,
    gateway: Option<std::net::IpAddr>,
) -> Vec<NextHop> {
    let own: Vec<NextHop> = policy
        .gateways_of(family)
        .into_iter()
        .map(|g| NextHop {
            via: g.via,
            dev: Some(g.dev.clone().unwrap_or_else(|| ifname.to_string())),
            weight: g.weight,
        })
        .collect();
    if !own.is_empty() {
        return own;
    }
    gateway
        .filter(|g| Family::of(g) == family)
        .map(|via| NextHop {
            via,
            dev: Some(ifname.to_string()),
            weight: 1,
        })
        .into_iter()
        .collect()
}

fn pod_rule(spec: RuleSpec) -> Object {
    Object::Rule {
        spec,
        side: Side::Pod,
    }
}

fn pod_route(spec: RouteSpec) -> Object {
    Object::Route {
        spec,
        side: Side::Pod,
    }
}

/// Everything `policy` makes in the pod for this attachment.
pub(super) fn policy_plan(policy: &Policy, pod: &Pod, link: &PodLink, out: &mut Plan) {
    let name = &policy.name;
    let ifname = &link.ifname;
    let Some(index) = link.index else {
        out.notes.push(Note::warning(format!(
            "steering {name}: the pod side of {ifname} was not read (no pod namespace): not steered"
        )));
        return;
    };
    let Some(table) = table_id(index, policy) else {
        out.notes.push(Note::warning(format!(
            "steering {name}: {ifname} has index {index}, past what a pod-side table id holds: not steered"
        )));
        return;
    };
    let mut routes: Vec<RouteSpec> = Vec::new();
    let mut rules: Vec<RuleSpec> = Vec::new();
    let mut families: Vec<Family> = Vec::new();
    for addr in &pod.addresses {
        let family = Family::of_net(&addr.address);
        if !policy.serves(family) {
            continue;
        }
        let hops = nexthops(policy, ifname, family, addr.gateway);
        if hops.is_empty() {
            out.notes.push(Note::warning(format!(
                "steering {name}: {} has no gateway (none of its family in the policy, none in prevResult): not steered",
                addr.address
            )));
            continue;
        }
        if !families.contains(&family) {
            families.push(family);
        }
        let mut add = |r: RouteSpec| {
            if !routes.contains(&r) {
                routes.push(r);
            }
        };
        add(RouteSpec {
            dst: addr.address.trunc(),
            table,
            kind: RouteKind::Unicast,
            nexthops: Vec::new(),
            dev: Some(ifname.clone()),
            metric: None,
        });
        for dst in policy
            .destinations
            .iter()
            .filter(|d| Family::of_net(d) == family)
        {
            add(RouteSpec {
                dst: *dst,
                table,
                kind: RouteKind::Unicast,
                nexthops: hops.clone(),
                dev: None,
                metric: None,
            });
        }
        if matches!(policy.matcher, Match::Source) {
            let src = host(&addr.address);
            let rule = |priority, dst, table| RuleSpec {
                family,
                priority,
                src: Some(src),
                dst,
                fwmark: None,
                fwmask: None,
                iif: None,
                table,
            };
            for ex in policy
                .exclude
                .iter()
                .filter(|e| Family::of_net(e) == family)
            {
                rules.push(rule(policy.priority - 1, Some(*ex), TABLE_MAIN));
            }
            rules.push(rule(policy.priority, None, table));
        }
    }
    if families.is_empty() {
        return;
    }
    // Routes first: a rule never points at a table still empty.
    out.pod_objects.extend(routes.into_iter().map(pod_route));
    out.pod_objects.extend(rules.into_iter().map(pod_rule));
    if let Match::Connmark { mark, mask } = policy.matcher {
        for family in families {
            let rule = super::steering::fwmark_rule(policy, table, family, mark, mask);
            out.pod_objects.push(pod_rule(rule));
        }
        out.pod_objects.push(Object::PodConnmark {
            policy: name.clone(),
            ifname: ifname.clone(),
            mark,
            mask: mask.unwrap_or(u32::MAX),
        });
    }
}

#[cfg(test)]
mod tests;
