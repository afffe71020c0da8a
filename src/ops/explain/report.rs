//! What `gwsteer explain` found for one packet: plain values that serialize
//! to the `--json` object and display as the text form.
//!
//! Every object is printed with its keys sorted, as the report always has
//! been: struct fields are declared in the order of their JSON names.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::RouteType;
use netlink_packet_route::rule::RuleAction;
use serde::{Serialize, Serializer};

use super::Query;
use crate::kernel::rtnl::{KernelRule, OtherSelectors};
use crate::model::{RTPROT_GWSTEER, TABLE_MAIN};

/// The report: `{"chosen", "error", "query", "route", "rule",
/// "rulesMatched", "table", "tableName"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The nexthop and device the kernel resolved; `None` without a route.
    pub chosen: Option<Chosen>,
    /// Why there is no route (the kernel's refusal), if there is none.
    pub error: Option<String>,
    pub query: Query,
    /// The FIB entry that matched; `None` if the kernel has none.
    pub route: Option<Route>,
    /// The rule the kernel's rule walk stopped at, if one is identified.
    pub rule: Option<MatchedRule>,
    /// The priorities of every rule whose selectors match the packet.
    pub rules_matched: Vec<u32>,
    /// The route's table, and its name.
    pub table: Option<u32>,
    pub table_name: Option<String>,
    /// When `from` is steered inside its pod (side "pod"): whose steering,
    /// and the namespace that shows its path (`--netns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_side: Option<PodSide>,
}

/// `{"network", "attachment", "netns"}`: the attachment whose pod-side
/// steering acts on the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodSide {
    pub network: String,
    pub attachment: String,
    pub netns: Option<String>,
}

/// The rule that decided: `{"action", "gwsteer", "priority", "protocol",
/// "selectors", "table", "tableName", "text"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedRule {
    /// `totable`, `goto`, `nop`, `blackhole`, `unreachable`, `prohibit`.
    #[serde(serialize_with = "lowercase_debug")]
    pub action: RuleAction,
    /// Whether gwsteer made it (its protocol is gwsteer's).
    pub gwsteer: bool,
    pub priority: u32,
    pub protocol: u8,
    pub selectors: Selectors,
    pub table: u32,
    pub table_name: String,
    /// The rule as `ip rule` prints it: `from 10.244.1.5 lookup 100`.
    pub text: String,
}

/// A rule's selectors. In JSON an object with a key for each selector the
/// rule has: `not` (true), `from`, `to` (prefixes), `iif`, `oif`, `fwmark`,
/// `fwmask` (hex), `tos`, and, for each selector explain does not evaluate,
/// its words with the value true (`"l3mdev"`, `"ipproto Tcp"`,
/// `"sport 1024-65535"`, `"dport 80-80"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub not: bool,
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// As the kernel reports them: the mark when it is not 0, the mask
    /// whenever the rule matches on marks (0xffffffff: every bit).
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    pub tos: u8,
    /// Selectors explain cannot evaluate for a bare packet (L3 master
    /// device, IP protocol, ports): a rule with any is taken as not matching.
    pub unevaluated: Vec<String>,
}

/// The FIB entry that matched: `{"dst", "gwsteer", "metric", "nexthops",
/// "protocol", "table", "tableName", "type"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The route's prefix; `None` (`"default"`) for a default route.
    #[serde(serialize_with = "prefix_or_default")]
    pub dst: Option<IpNet>,
    pub gwsteer: bool,
    pub metric: Option<u32>,
    /// One for a single-path route, each with its weight for a multipath one.
    pub nexthops: Vec<Hop>,
    pub protocol: u8,
    pub table: u32,
    pub table_name: String,
    /// `unicast`, `local`, `blackhole`, `unreachable`…
    #[serde(rename = "type", serialize_with = "lowercase_debug")]
    pub kind: RouteType,
}

/// One nexthop of a route: `{"dev", "via", "weight"}` (`weight` only for a
/// multipath route, 1…256 as `ip route` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub dev: Option<String>,
    pub via: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// The nexthop and device the kernel resolved for this packet, and the
/// source address it would give it: `{"dev", "src", "type", "via"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chosen {
    pub dev: Option<String>,
    pub src: Option<IpAddr>,
    #[serde(rename = "type", serialize_with = "lowercase_debug")]
    pub kind: RouteType,
    pub via: Option<IpAddr>,
}

/// Table names as iproute2 prints them.
pub fn table_name(table: u32) -> String {
    match table {
        253 => "default".into(),
        TABLE_MAIN => "main".into(),
        255 => "local".into(),
        other => other.to_string(),
    }
}

/// The words of the selectors explain cannot evaluate (the protocol by its
/// name in netlink-packet-route), in the order the kernel reports them.
pub(crate) fn unevaluated(other: &OtherSelectors) -> Vec<String> {
    let mut words = Vec::new();
    if other.l3mdev {
        words.push("l3mdev".to_string());
    }
    if let Some((start, end)) = other.sport {
        words.push(format!("sport {start}-{end}"));
    }
    if let Some((start, end)) = other.dport {
        words.push(format!("dport {start}-{end}"));
    }
    if let Some(p) = other.ip_proto {
        words.push(format!("ipproto {p:?}"));
    }
    words
}

impl Selectors {
    pub(crate) fn of(rule: &KernelRule) -> Selectors {
        let spec = &rule.spec;
        Selectors {
            not: rule.other.invert,
            from: spec.src,
            to: spec.dst,
            iif: spec.iif.clone(),
            oif: rule.other.oif.clone(),
            // A rule spec's mark is 0 and its mask unset (every bit) where
            // the kernel reports no mark or a full mask.
            fwmark: spec.fwmark.filter(|m| *m != 0),
            fwmask: spec.fwmark.map(|_| spec.fwmask.unwrap_or(u32::MAX)),
            tos: rule.other.tos,
            unevaluated: unevaluated(&rule.other),
        }
    }
}

impl MatchedRule {
    pub(crate) fn of(rule: &KernelRule) -> MatchedRule {
        let selectors = Selectors::of(rule);
        let table = rule.spec.table;
        let mut text = selectors.to_string();
        match rule.action {
            RuleAction::ToTable => text.push_str(&format!(" lookup {}", table_name(table))),
            other => text.push_str(&format!(" {}", lower_debug(&other))),
        }
        if let Some(n) = rule.other.suppress_prefixlen {
            text.push_str(&format!(" suppress_prefixlength {n}"));
        }
        MatchedRule {
            action: rule.action,
            gwsteer: rule.protocol == RTPROT_GWSTEER,
            priority: rule.spec.priority,
            protocol: rule.protocol,
            selectors,
            table,
            table_name: table_name(table),
            text,
        }
    }
}

/// `Debug` in lower case: how the report names actions and route types.
fn lower_debug(value: &impl fmt::Debug) -> String {
    format!("{value:?}").to_lowercase()
}

fn lowercase_debug<T: fmt::Debug, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lower_debug(value))
}

fn prefix_or_default<S: Serializer>(dst: &Option<IpNet>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&PrefixOrDefault(dst))
}

struct PrefixOrDefault<'a>(&'a Option<IpNet>);

impl fmt::Display for PrefixOrDefault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(net) => write!(f, "{net}"),
            None => f.write_str("default"),
        }
    }
}

/// A selector's JSON value.
#[derive(Serialize)]
#[serde(untagged)]
enum SelectorValue {
    Flag(bool),
    Text(String),
    Number(u8),
}

impl Serialize for Selectors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&str, SelectorValue)> = Vec::new();
        if self.not {
            entries.push(("not", SelectorValue::Flag(true)));
        }
        if let Some(net) = &self.from {
            entries.push(("from", SelectorValue::Text(net.to_string())));
        }
        if let Some(net) = &self.to {
            entries.push(("to", SelectorValue::Text(net.to_string())));
        }
        if let Some(dev) = &self.iif {
            entries.push(("iif", SelectorValue::Text(dev.clone())));
        }
        if let Some(dev) = &self.oif {
            entries.push(("oif", SelectorValue::Text(dev.clone())));
        }
        if let Some(m) = self.fwmark {
            entries.push(("fwmark", SelectorValue::Text(format!("{m:#x}"))));
        }
        if let Some(m) = self.fwmask {
            entries.push(("fwmask", SelectorValue::Text(format!("{m:#x}"))));
        }
        if self.tos != 0 {
            entries.push(("tos", SelectorValue::Number(self.tos)));
        }
        for word in &self.unevaluated {
            entries.push((word, SelectorValue::Flag(true)));
        }
        entries.sort_by_key(|(key, _)| *key);
        s.collect_map(entries)
    }
}

/// The selectors as `ip rule` prints them (`from all` when the rule has no
/// source), without the tos.
impl fmt::Display for Selectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.not {
            f.write_str("not ")?;
        }
        match &self.from {
            Some(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "from {}", n.addr())?,
            Some(n) if n.prefix_len() > 0 => write!(f, "from {n}")?,
            _ => f.write_str("from all")?,
        }
        match &self.to {
            Some(n) if n.prefix_len() == n.max_prefix_len() => write!(f, " to {}", n.addr())?,
            Some(n) if n.prefix_len() > 0 => write!(f, " to {n}")?,
            _ => {}
        }
        if let Some(m) = self.fwmark {
            match self.fwmask {
                Some(mask) if mask != u32::MAX => write!(f, " fwmark {m:#x}/{mask:#x}")?,
                _ => write!(f, " fwmark {m:#x}")?,
            }
        }
        if let Some(dev) = &self.iif {
            write!(f, " iif {dev}")?;
        }
        if let Some(dev) = &self.oif {
            write!(f, " oif {dev}")?;
        }
        for word in &self.unevaluated {
            write!(f, " {word}")?;
        }
        Ok(())
    }
}

/// `via 10.0.0.1 dev eth0` (`dev -` when the kernel named none).
fn via_dev(f: &mut fmt::Formatter<'_>, via: Option<&IpAddr>, dev: Option<&str>) -> fmt::Result {
    if let Some(via) = via {
        write!(f, "via {via} ")?;
    }
    write!(f, "dev {}", dev.unwrap_or("-"))
}

/// `via 10.0.0.1 dev eth0 weight 2`.
impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        via_dev(f, self.via.as_ref(), self.dev.as_deref())?;
        if let Some(w) = self.weight {
            write!(f, " weight {w}")?;
        }
        Ok(())
    }
}

/// `via 10.0.0.1 dev eth0 src 10.0.0.2`.
impl fmt::Display for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        via_dev(f, self.via.as_ref(), self.dev.as_deref())?;
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// The report in words, one line per step of the kernel's decision.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = &self.query;
        write!(f, "packet to {}", q.dst)?;
        if let Some(from) = q.from {
            write!(f, " from {from}")?;
        }
        match &q.iif {
            Some(iif) => write!(f, " arriving on {iif}")?,
            None => f.write_str(" sent by the node")?,
        }
        if let Some(m) = q.mark {
            write!(f, " with mark {m:#x}")?;
        }
        writeln!(f)?;
        match &self.rule {
            None => writeln!(f, "  rule     none identified")?,
            Some(rule) => {
                let whose = if rule.gwsteer {
                    format!("gwsteer's (protocol {RTPROT_GWSTEER})")
                } else {
                    format!("not gwsteer's (protocol {})", rule.protocol)
                };
                writeln!(f, "  rule     {}: {}  [{whose}]", rule.priority, rule.text)?;
            }
        }
        let Some(route) = &self.route else {
            let why = self.error.as_deref().unwrap_or("no route");
            writeln!(f, "  route    none: {why}")?;
            return self.write_pod_side(f);
        };
        writeln!(f, "  table    {}", route.table_name)?;
        let whose = if route.gwsteer { " (gwsteer's)" } else { "" };
        writeln!(
            f,
            "  route    {} {} proto {}{whose}",
            lower_debug(&route.kind),
            PrefixOrDefault(&route.dst),
            route.protocol
        )?;
        if route.nexthops.len() > 1 {
            for hop in &route.nexthops {
                writeln!(f, "           nexthop {hop}")?;
            }
        }
        match &self.chosen {
            Some(chosen) => writeln!(f, "  chosen   {chosen}")?,
            None => writeln!(
                f,
                "  chosen   none: {}",
                self.error.as_deref().unwrap_or("?")
            )?,
        }
        self.write_pod_side(f)
    }
}

impl Report {
    fn write_pod_side(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(pod), Some(from)) = (&self.pod_side, self.query.from) else {
            return Ok(());
        };
        writeln!(
            f,
            "  pod side {from} is steered inside its pod by network {} ({}): this is the node's path, not the reply's",
            pod.network, pod.attachment
        )?;
        match &pod.netns {
            Some(netns) => writeln!(
                f,
                "           the pod's: gwsteer explain {} --from {from} --netns {netns}",
                self.query.dst
            ),
            None => Ok(()),
        }
    }
}
