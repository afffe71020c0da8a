//! `steering[]` (CONTRACT 3.1): return-path and egress steering policies,
//! validated with field paths; names, tables and priorities unique.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::ifname;
use super::vrf;
use crate::cni::reader::{At, Obj};
use crate::error::{Error, Result};
use crate::model::Family;

/// The main table's rule sits at 32766: a steering rule at or after it never
/// sees a packet, because main's default route answers first.
const MAIN_RULE_PRIORITY: u32 = 32766;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `from <podIP> lookup <table>` per steered pod.
    Source,
    /// fwmark set on packets from steered pods (optionally only to `egressTo`).
    Mark { mark: u32, mask: Option<u32> },
    /// connmark on connections arriving by `ingressInterfaces`, restored on replies.
    Connmark { mark: u32, mask: Option<u32> },
}

/// Where a policy steers an attachment (`side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SideChoice {
    /// The pod side when the attachment's pod interface has no host-side
    /// peer (macvlan, ipvlan, host-device, a VF) and the policy is `source`
    /// or `connmark`; the node side otherwise.
    #[default]
    Auto,
    /// Always on the node (the reply takes the detour through the primary
    /// when the interface has no host-side peer).
    Node,
    /// Always inside the pod, where the reply leaves by its own interface.
    Pod,
}

impl SideChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            SideChoice::Auto => "auto",
            SideChoice::Node => "node",
            SideChoice::Pod => "pod",
        }
    }
}

/// Which pods' addresses a node-side policy's kernel objects name
/// (`scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Per steered pod: `from <podIP> lookup <table>` (and its exclusions)
    /// for each pod address.
    #[default]
    Pod,
    /// Per pod subnet: `from <subnet> lookup <table>` (mark/connmark: the
    /// subnet in the policy's set) once for every pod of the subnet, held by
    /// them; a pod that opts out gets one exception rule (mark/connmark: its
    /// address in the policy's opt-out set).
    Subnet,
}

/// Policies past this index cannot steer on the pod side: the pod-side
/// table id holds the policy's index in 8 bits (see `plan::pod`).
pub const POD_SIDE_POLICIES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub via: IpAddr,
    pub dev: Option<String>,
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// The node-side table; `None` only with `side: "pod"` (the pod side
    /// uses a table of its own per interface).
    pub table: Option<u32>,
    /// Where the policy steers (`side`).
    pub side: SideChoice,
    /// Per pod or per pod subnet (`scope`).
    pub scope: Scope,
    /// The policy's position in `steering`.
    pub index: usize,
    pub priority: u32,
    pub matcher: Match,
    pub gateways: Vec<Gateway>,
    /// Destinations routed via the gateways, only of families that have a gateway.
    pub destinations: Vec<IpNet>,
    pub exclude: Vec<IpNet>,
    pub egress_to: Vec<IpNet>,
    pub ingress_interfaces: Vec<String>,
    /// `None`: pods of every namespace.
    pub namespaces: Option<BTreeSet<String>>,
}

impl Policy {
    /// The priorities of this policy's rules: its own and, for a `source`
    /// policy with `exclude` or of scope `subnet`, `priority − 1` for the
    /// exclusion and exception rules.
    pub fn rule_priorities(&self) -> Vec<u32> {
        if matches!(self.matcher, Match::Source)
            && (!self.exclude.is_empty() || self.scope == Scope::Subnet)
        {
            vec![self.priority, self.priority - 1]
        } else {
            vec![self.priority]
        }
    }

    pub fn gateways_of(&self, family: Family) -> Vec<&Gateway> {
        self.gateways
            .iter()
            .filter(|g| Family::of(&g.via) == family)
            .collect()
    }

    pub fn serves(&self, family: Family) -> bool {
        self.destinations
            .iter()
            .any(|d| Family::of_net(d) == family)
    }
}

pub(super) fn parse_policies(v: &At) -> Result<Vec<Policy>> {
    let items = v.array()?;
    let mut policies: Vec<Policy> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let policy = parse_policy(item, index)?;
        let clash = |what: &str, other: &Policy| {
            item.err(format!(
                "{what} is already used by steering policy \"{}\"",
                other.name
            ))
        };
        for other in &policies {
            if other.name == policy.name {
                return Err(clash(&format!("name \"{}\"", policy.name), other));
            }
            if let (Some(table), true) = (policy.table, other.table == policy.table) {
                return Err(clash(&format!("table {table}"), other));
            }
            if other.priority == policy.priority {
                return Err(clash(&format!("priority {}", policy.priority), other));
            }
        }
        priority_collision(&policies, &policy, index)?;
        policies.push(policy);
    }
    Ok(policies)
}

/// A policy's rules must not share a priority with another policy's: at one
/// priority the kernel tries rules in insertion order, so which policy wins
/// would depend on which pod came first. A `source` policy with `exclude`
/// also uses `priority − 1`.
fn priority_collision(earlier: &[Policy], policy: &Policy, index: usize) -> Result<()> {
    let role = |p: &Policy, priority: u32| {
        if priority == p.priority {
            "steering rule"
        } else {
            "exclusion rules"
        }
    };
    for (i, other) in earlier.iter().enumerate() {
        let mine = policy.rule_priorities();
        let Some(at) = other
            .rule_priorities()
            .into_iter()
            .find(|p| mine.contains(p))
        else {
            continue;
        };
        return Err(Error::config(format!(
            "steering[{index}].priority: {} puts the {} of policy \"{}\" at {at}, where steering[{i}] (policy \"{}\") has its {}; give them priorities that do not meet (a source policy with exclude also uses priority − 1)",
            policy.priority,
            role(policy, at),
            policy.name,
            other.name,
            role(other, at),
        )));
    }
    Ok(())
}

pub(super) fn parse_mark(v: &At) -> Result<u32> {
    match v.value {
        Value::Number(_) => v.u32_in(0, u32::MAX),
        Value::String(s) => {
            let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
            let parsed = match hex {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => s.parse::<u32>().ok(),
            };
            parsed.ok_or_else(|| {
                v.err(format!(
                    "\"{s}\" is not a 32-bit mark (hex as `ip rule` prints it, e.g. \"0x14\")"
                ))
            })
        }
        _ => Err(v.err("expected a mark such as \"0x14\"")),
    }
}

/// With `vrf.masquerade`, bit 31 of the conntrack mark tells the VRF's
/// connections (started on its leg) from all others, and the VRF's nat
/// chain masquerades exactly those. A `connmark` policy must not set that
/// bit on other connections, nor clear it on the VRF's own.
pub(super) fn vrf_mark_conflicts(steering: &[Policy], vrf: &vrf::Vrf) -> Result<()> {
    let bit = crate::model::VRF_CT_MARK_BIT;
    for (i, p) in steering.iter().enumerate() {
        let Match::Connmark { mark, mask } = p.matcher else {
            continue;
        };
        if mark & bit != 0 {
            return Err(Error::config(format!(
                "steering[{i}].mark: {mark:#x} uses bit 31 ({bit:#x}) of the conntrack mark, which vrf.masquerade uses to find the VRF's connections; choose a mark below {bit:#x}"
            )));
        }
        let touches_bit = mask.unwrap_or(u32::MAX) & bit != 0;
        if let Some(j) = p
            .ingress_interfaces
            .iter()
            .position(|dev| *dev == vrf.vrf_leg.name)
            .filter(|_| touches_bit)
        {
            return Err(Error::config(format!(
                "steering[{i}].ingressInterfaces[{j}]: {} is the VRF leg, whose connections vrf.masquerade marks with bit 31 ({bit:#x}) of the conntrack mark; this policy's mark would overwrite it: give a mask without that bit (e.g. \"mask\": \"0xffff\")",
                vrf.vrf_leg.name
            )));
        }
    }
    Ok(())
}

/// `destinations` of an object that has `gateways` (a steering policy, the
/// VRF): each must have a gateway of its address family; left out, the
/// default route of every family that has a gateway.
pub fn destinations(o: &Obj, gateways: &[Gateway]) -> Result<Vec<IpNet>> {
    let families: BTreeSet<Family> = gateways.iter().map(|g| Family::of(&g.via)).collect();
    let Some(d) = o.get("destinations") else {
        return Ok(["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|s| s.parse::<IpNet>().ok())
            .filter(|d| families.contains(&Family::of_net(d)))
            .collect());
    };
    let list = d.list_of(|x| x.cidr())?;
    for (i, dst) in list.iter().enumerate() {
        if !families.contains(&Family::of_net(dst)) {
            return Err(Error::config(format!(
                "{}[{i}]: {dst} has no gateway of its address family in {}.gateways",
                d.path, o.path
            )));
        }
    }
    Ok(list)
}

fn parse_policy(item: &At, index: usize) -> Result<Policy> {
    let o = item.object()?;
    o.only(&[
        "name",
        "table",
        "priority",
        "match",
        "mark",
        "mask",
        "gateways",
        "destinations",
        "exclude",
        "egressTo",
        "ingressInterfaces",
        "namespaces",
        "side",
        "scope",
    ])?;
    let side = match o.get("side") {
        None => SideChoice::Auto,
        Some(v) => match v.str()? {
            "auto" => SideChoice::Auto,
            "node" => SideChoice::Node,
            "pod" => SideChoice::Pod,
            other => return Err(v.err(format!("\"{other}\" is not one of auto, node, pod"))),
        },
    };
    if side != SideChoice::Node && index >= POD_SIDE_POLICIES {
        return Err(o.err(format!(
            "only the first {POD_SIDE_POLICIES} policies can steer on the pod side (a pod-side table id holds the policy's index): set \"side\": \"node\""
        )));
    }
    let name_at = o.req("name")?;
    let name = name_at.str()?;
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(name_at.err(format!("\"{name}\" must be 1 to 15 of a-z, 0-9 and '-'")));
    }
    let table = match (o.get("table"), side) {
        (Some(t), SideChoice::Pod) => {
            return Err(t.err(
                "not used with side \"pod\": inside the pod gwsteer uses a table of its own per interface, which no other attachment can have",
            ));
        }
        (None, SideChoice::Pod) => None,
        (None, _) => {
            return Err(Error::config(format!(
                "{}.table: required (unless side is \"pod\")",
                o.path
            )));
        }
        (Some(table_at), _) => {
            let table = table_at.u32_in(1, u32::MAX)?;
            if matches!(table, 253..=255) {
                return Err(table_at.err(format!(
                    "{table} is a reserved table (253 default, 254 main, 255 local)"
                )));
            }
            Some(table)
        }
    };
    let priority = match o.get("priority") {
        Some(p) => {
            let n = p.u64()?;
            if !(2..u64::from(MAIN_RULE_PRIORITY)).contains(&n) {
                return Err(p.err(format!(
                    "{n} is out of range 2…32765 (exclusion rules use priority − 1, and rules at or after 32766, main's, never match)"
                )));
            }
            n as u32
        }
        None => {
            let p = 1000 + 10 * index as u64;
            if p >= u64::from(MAIN_RULE_PRIORITY) {
                return Err(o.err("too many policies for default priorities; set priority"));
            }
            p as u32
        }
    };
    let mode = match o.get("match") {
        None => "source",
        Some(m) => m.str()?,
    };
    let mark_of = |o: &Obj| -> Result<(u32, Option<u32>)> {
        let mark = parse_mark(&o.req("mark")?)?;
        let mask = o.get("mask").map(|m| parse_mark(&m)).transpose()?;
        if mark == 0 {
            return Err(o
                .req("mark")?
                .err("0 is not a usable mark (it matches unmarked packets)"));
        }
        Ok((mark, mask))
    };
    let matcher = match mode {
        "source" => {
            for key in ["mark", "mask", "egressTo", "ingressInterfaces"] {
                if let Some(v) = o.get(key) {
                    return Err(v.err("only used with match \"mark\" or \"connmark\""));
                }
            }
            Match::Source
        }
        "mark" => {
            if side == SideChoice::Pod {
                return Err(o.req("match")?.err(
                    "\"mark\" steers on the node only; inside the pod use \"source\" or \"connmark\"",
                ));
            }
            let (mark, mask) = mark_of(&o)?;
            Match::Mark { mark, mask }
        }
        "connmark" => {
            let (mark, mask) = mark_of(&o)?;
            Match::Connmark { mark, mask }
        }
        other => {
            return Err(o
                .req("match")?
                .err(format!("\"{other}\" is not one of source, mark, connmark")));
        }
    };
    // On the pod side the gateways may come from prevResult (the gateway
    // of each of the interface's addresses).
    let gateways = match (o.get("gateways"), side) {
        (None, SideChoice::Pod) => Vec::new(),
        (None, _) => {
            return Err(Error::config(format!(
                "{}.gateways: required (unless side is \"pod\", where prevResult's gateways serve)",
                o.path
            )));
        }
        (Some(gateways_at), _) => {
            let gateways = gateways_at.list_of(parse_gateway)?;
            if gateways.is_empty() {
                return Err(gateways_at.err("at least one gateway is required"));
            }
            gateways
        }
    };
    let destinations = if gateways.is_empty() {
        match o.get("destinations") {
            Some(d) => d.list_of(|x| x.cidr())?,
            None => ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|s| s.parse::<IpNet>().ok())
                .collect(),
        }
    } else {
        destinations(&o, &gateways)?
    };
    if let Some(d) = o.get("destinations")
        && destinations.is_empty()
    {
        return Err(d.err("at least one destination is required"));
    }
    let cidrs = |key: &str| -> Result<Vec<IpNet>> {
        o.get(key)
            .map_or(Ok(Vec::new()), |v| v.list_of(|x| x.cidr()))
    };
    let exclude = cidrs("exclude")?;
    let egress_to = cidrs("egressTo")?;
    let ingress_interfaces = match o.get("ingressInterfaces") {
        None => Vec::new(),
        Some(v) => v.list_of(ifname)?,
    };
    match matcher {
        Match::Connmark { .. } if side == SideChoice::Pod && !ingress_interfaces.is_empty() => {
            return Err(o.req("ingressInterfaces")?.err(
                "not used with side \"pod\": inside the pod, connections are marked as they arrive on the attachment's own interface",
            ));
        }
        Match::Connmark { .. } if side == SideChoice::Pod => {
            if let Some(v) = o.get("egressTo") {
                return Err(v.err("only used with match \"mark\""));
            }
        }
        Match::Connmark { .. } if ingress_interfaces.is_empty() => {
            return Err(match o.get("ingressInterfaces") {
                Some(v) => v.err("at least one interface is required"),
                None => Error::config(format!(
                    "{}.ingressInterfaces: required for match \"connmark\"",
                    o.path
                )),
            });
        }
        Match::Connmark { .. } => {
            if let Some(v) = o.get("egressTo") {
                return Err(v.err("only used with match \"mark\""));
            }
        }
        Match::Mark { .. } => {
            if let Some(v) = o.get("ingressInterfaces") {
                return Err(v.err("only used with match \"connmark\""));
            }
        }
        Match::Source => {}
    }
    let namespaces = o
        .get("namespaces")
        .map(|v| v.list_of(|x| Ok(x.str()?.to_string())))
        .transpose()?
        .map(|v| v.into_iter().collect());
    let scope = parse_scope(&o, side)?;
    Ok(Policy {
        name: name.to_string(),
        table,
        side,
        scope,
        index,
        priority,
        matcher,
        gateways,
        destinations,
        exclude,
        egress_to,
        ingress_interfaces,
        namespaces,
    })
}

/// `scope`: `pod` (default) or `subnet`. A subnet's kernel objects (a
/// `source` rule, a range in a mark/connmark policy's set) steer every
/// address of the subnet, so they cannot select pods by namespace; they are
/// node-side (the pod side is inside each pod, whatever the node holds).
fn parse_scope(o: &Obj, side: SideChoice) -> Result<Scope> {
    let Some(v) = o.get("scope") else {
        return Ok(Scope::Pod);
    };
    let scope = match v.str()? {
        "pod" => return Ok(Scope::Pod),
        "subnet" => Scope::Subnet,
        other => return Err(v.err(format!("\"{other}\" is not one of pod, subnet"))),
    };
    if side == SideChoice::Pod {
        return Err(v.err(
            "\"subnet\" is a node-side scope; with side \"pod\" the rules are inside each pod",
        ));
    }
    if o.get("namespaces").is_some() {
        return Err(v.err(
            "\"subnet\" steers every pod of the subnet and cannot select by namespace: use scope \"pod\" with namespaces (a pod may still opt out through args.cni.gwsteer.steering)",
        ));
    }
    Ok(scope)
}

/// One gateway: `{"via": IP, "dev": name?, "weight": 1…256?}`.
pub fn parse_gateway(v: &At) -> Result<Gateway> {
    let o = v.object()?;
    o.only(&["via", "dev", "weight"])?;
    let via_at = o.req("via")?;
    let via = via_at.ip()?;
    if let Some(why) = unusable_gateway(via) {
        return Err(via_at.err(format!("{via} cannot be a gateway: {why}")));
    }
    let dev = match o.get("dev") {
        None => None,
        Some(d) => Some(ifname(&d)?),
    };
    let weight = match o.get("weight") {
        None => 1,
        Some(w) => w.u32_in(1, 256)? as u16,
    };
    Ok(Gateway { via, dev, weight })
}

/// Why `ip` can never be a next hop, if so: the kernel would take
/// `via 0.0.0.0` (as no gateway at all) and the route would never read back
/// as planned; the others are not a neighbour's address.
pub fn unusable_gateway(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("it is the unspecified address")
    } else if ip.is_multicast() {
        Some("it is a multicast address")
    } else if ip.is_loopback() {
        Some("it is a loopback address")
    } else if ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
        Some("it is the broadcast address")
    } else {
        None
    }
}
