//! `gwsteer explain <ip> [--from <ip>] [--iif <dev>] [--mark <m>] [--json]`:
//! the path a packet takes on this node, as the kernel decides it.
//!
//! Two `RTM_GETROUTE` requests carry the packet's selectors (`RTA_DST`,
//! `RTA_SRC`, `RTA_IIF`, `RTA_MARK`): one with `RTM_F_FIB_MATCH` answers the
//! FIB entry that matched (its prefix, table, protocol, every nexthop and
//! weight), one without answers the resolved route (the chosen nexthop and
//! device). The kernel reports the table but not the rule, so the rules are
//! dumped and the first, by priority, whose selectors match the packet and
//! that looks up that table is named: the one the kernel's rule walk stopped
//! at (rules before it that matched but whose table had no route fall
//! through, as in the kernel).

mod report;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use netlink_packet_route::route::{RouteAttribute, RouteFlags, RouteMessage};
use netlink_packet_route::rule::{RuleAction, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::kernel::rtnl::{
    KernelRule, NetlinkKernel, address_family, route_ip, rule_from_message, via_ip,
};
use crate::model::{Family, RTPROT_GWSTEER, Side};

use report::table_name;
pub use report::{Chosen, Hop, MatchedRule, PodSide, Report, Route, Selectors};

const USAGE: &str =
    "usage: gwsteer explain <ip> [--from <ip>] [--iif <dev>] [--mark <m>] [--netns <path>] [--json]

The path a packet to <ip> takes on this node: the policy rule that matched
(priority, selectors, whether gwsteer made it), the table, the route (prefix,
nexthops and multipath weights), and the nexthop and device chosen.
  --from <ip>   the packet's source address (a pod's address)
  --iif <dev>   the device it came in on (cni0 for a pod's packet); without
                it the packet is one the node itself sends
  --mark <m>    its firewall mark (decimal or 0x hex)
  --netns <path>  the path inside this network namespace (a pod's, e.g.
                /var/run/netns/<name>): where a pod-side policy steers
  --json        one JSON object instead of text

With --from, an address a policy steers inside its pod (side \"pod\") is
named, with the --netns that shows the pod's own path.";

/// The packet asked about; in the report `{"dst", "from", "iif", "mark"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    pub dst: IpAddr,
    pub from: Option<IpAddr>,
    pub iif: Option<String>,
    pub mark: Option<u32>,
    /// `--netns`: the namespace whose path is explained (the node's without).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// `--json`: how to print the report, not part of it.
    #[serde(skip)]
    pub json: bool,
    /// `--state-dir`: where to look for pod-side steering of `from`.
    #[serde(skip)]
    pub state_dir: PathBuf,
}

fn parse_mark(text: &str) -> std::result::Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("--mark {text:?}: not a number (decimal or 0x hex)"))
}

fn parse_ip(text: &str, what: &str) -> std::result::Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{what} {text:?}: not an IP address"))
}

/// Parses explain's arguments (after the word `explain`). `--state-dir` is
/// accepted, as by every command, and not needed.
pub fn parse(args: &[String]) -> std::result::Result<Query, String> {
    let mut dst = None;
    let mut q = Query {
        dst: IpAddr::from([0, 0, 0, 0]),
        from: None,
        iif: None,
        mark: None,
        netns: None,
        json: false,
        state_dir: PathBuf::from(crate::config::DEFAULT_STATE_DIR),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--json" => q.json = true,
            "--from" => q.from = Some(parse_ip(&value("--from")?, "--from")?),
            "--iif" => q.iif = Some(value("--iif")?),
            "--mark" => q.mark = Some(parse_mark(&value("--mark")?)?),
            "--netns" => q.netns = Some(PathBuf::from(value("--netns")?)),
            "--state-dir" => q.state_dir = PathBuf::from(value("--state-dir")?),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other if dst.is_none() => dst = Some(parse_ip(other, "destination")?),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    q.dst = dst.ok_or("which address? gwsteer explain <ip>")?;
    if let Some(from) = q.from
        && Family::of(&from) != Family::of(&q.dst)
    {
        return Err(format!(
            "--from {from} and {} are of different families",
            q.dst
        ));
    }
    Ok(q)
}

/// `gwsteer explain …`: 0 a route was found, 1 none (or the kernel refused),
/// 2 usage error.
pub fn run(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return 0;
    }
    let q = match parse(args) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("gwsteer explain: {e}\n\n{USAGE}");
            return 2;
        }
    };
    match explain(&q) {
        Ok(report) => {
            if q.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("gwsteer explain: writing the report: {e}");
                        return 1;
                    }
                }
            } else {
                print!("{report}");
            }
            if report.route.is_none() { 1 } else { 0 }
        }
        Err(e) => {
            eprintln!("gwsteer explain: {e}");
            1
        }
    }
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    address_family(Family::of(ip))
}

fn host_len(ip: &IpAddr) -> u8 {
    IpNet::from(*ip).max_prefix_len()
}

fn get_route(q: &Query, iif: Option<u32>, fib_match: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(&q.dst);
    msg.header.destination_prefix_length = host_len(&q.dst);
    // RTM_F_LOOKUP_TABLE: IPv4 reports the table the route was found in
    // only with it (else "main"); IPv6 always does and, strictly checked,
    // refuses any flag but RTM_F_FIB_MATCH.
    if q.dst.is_ipv4() {
        msg.header.flags = RouteFlags::LookupTable;
    }
    if fib_match {
        msg.header.flags |= RouteFlags::FibMatch;
    }
    msg.attributes
        .push(RouteAttribute::Destination(q.dst.into()));
    if let Some(src) = q.from {
        msg.header.source_prefix_length = host_len(&src);
        msg.attributes.push(RouteAttribute::Source(src.into()));
    }
    if let Some(index) = iif {
        msg.attributes.push(RouteAttribute::Iif(index));
    }
    if let Some(mark) = q.mark {
        msg.attributes.push(RouteAttribute::Mark(mark));
    }
    msg
}

/// One `RTM_GETROUTE`; `Ok(Err(text))` when the kernel has no route (or
/// refuses the packet: rp_filter, a prohibit rule), with its reason.
fn ask(
    kernel: &mut NetlinkKernel,
    msg: RouteMessage,
) -> Result<std::result::Result<RouteMessage, String>> {
    match kernel.node_query(RouteNetlinkMessage::GetRoute(msg), false) {
        Ok(answer) => Ok(answer
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| "the kernel answered no route".to_string())),
        Err(boxed) => match *boxed {
            (Some(errno), _) => Ok(Err(std::io::Error::from_raw_os_error(errno).to_string())),
            (None, e) => Err(e),
        },
    }
}

/// Whether the kernel's `fib_rule_match` takes `rule` for `q`.
fn matches(rule: &KernelRule, q: &Query) -> bool {
    let (spec, other) = (&rule.spec, &rule.other);
    if !report::unevaluated(other).is_empty() {
        return false;
    }
    // The kernel gives a locally sent packet iif "lo".
    let iif = q.iif.as_deref().unwrap_or("lo");
    let mut hit = true;
    if let Some(want) = &spec.iif {
        hit &= want == iif;
    }
    // Neither an arriving packet nor `ip route get` has an output device
    // when rules are walked.
    if other.oif.is_some() {
        hit = false;
    }
    if let Some(mark) = spec.fwmark {
        let mask = spec.fwmask.unwrap_or(u32::MAX);
        hit &= (q.mark.unwrap_or(0) ^ mark) & mask == 0;
    }
    if let Some((start, end)) = other.uid_range {
        hit &= start == 0 || end < start || (start..=end).contains(&0);
    }
    if let Some(net) = &spec.src
        && net.prefix_len() > 0
    {
        hit &= q.from.is_some_and(|a| net.contains(&a));
    }
    if let Some(net) = &spec.dst
        && net.prefix_len() > 0
    {
        hit &= net.contains(&q.dst);
    }
    if other.tos != 0 {
        hit = false;
    }
    hit != other.invert
}

/// Every rule of `family`, in the order the kernel walks them.
fn rules(kernel: &mut NetlinkKernel, family: AddressFamily) -> Result<Vec<KernelRule>> {
    let mut msg = RuleMessage::default();
    msg.header.family = family;
    let answer = kernel
        .node_query(RouteNetlinkMessage::GetRule(msg), true)
        .map_err(|b| b.1)?;
    let mut out: Vec<KernelRule> = answer
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRule(r) => rule_from_message(r),
            _ => None,
        })
        .collect();
    out.sort_by_key(|r| r.spec.priority);
    Ok(out)
}

/// A nexthop from a route's (or a multipath entry's) attributes; `oif` is
/// the multipath entry's device, which its attributes do not repeat.
fn hop_of(
    kernel: &mut NetlinkKernel,
    attrs: &[RouteAttribute],
    oif: Option<u32>,
    weight: Option<u32>,
) -> Result<Hop> {
    let mut via = None;
    let mut dev = oif;
    for a in attrs {
        match a {
            RouteAttribute::Gateway(g) => via = route_ip(g),
            RouteAttribute::Via(v) => via = via_ip(v),
            RouteAttribute::Oif(i) => dev = Some(*i),
            _ => {}
        }
    }
    let dev = match dev {
        Some(i) if i != 0 => Some(kernel.node_dev_name(i)?),
        _ => None,
    };
    Ok(Hop { dev, via, weight })
}

fn route_of(kernel: &mut NetlinkKernel, r: &RouteMessage) -> Result<Route> {
    let mut dst = None;
    let mut table = u32::from(r.header.table);
    let mut metric = None;
    let mut multipath = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(m) => metric = Some(*m),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    let prefix_len = r.header.destination_prefix_length;
    let dst = dst
        .filter(|_| prefix_len > 0)
        .and_then(|a| IpNet::new(a, prefix_len).ok());
    let nexthops = match multipath {
        Some(hops) => hops
            .iter()
            .map(|h| {
                hop_of(
                    kernel,
                    &h.attributes,
                    Some(h.interface_index),
                    Some(u32::from(h.hops) + 1),
                )
            })
            .collect::<Result<Vec<_>>>()?,
        None => vec![hop_of(kernel, &r.attributes, None, None)?],
    };
    let protocol = u8::from(r.header.protocol);
    Ok(Route {
        dst,
        gwsteer: protocol == RTPROT_GWSTEER,
        metric,
        nexthops,
        protocol,
        table,
        table_name: table_name(table),
        kind: r.header.kind,
    })
}

fn chosen_of(kernel: &mut NetlinkKernel, r: &RouteMessage) -> Result<Chosen> {
    let hop = hop_of(kernel, &r.attributes, None, None)?;
    let src = r.attributes.iter().rev().find_map(|a| match a {
        RouteAttribute::PrefSource(p) => route_ip(p),
        _ => None,
    });
    Ok(Chosen {
        dev: hop.dev,
        src,
        kind: r.header.kind,
        via: hop.via,
    })
}

/// The rule the walk stopped at: the first matching one that looks up the
/// route's table; without a route, the first matching one that ends the walk
/// (unreachable, prohibit, blackhole), if any. A rule with
/// suppress_prefixlength N passes on routes of prefix length N or less (the
/// walk goes on); a VRF's packets stop at the l3mdev rule, whose table is
/// the VRF's.
fn deciding_rule<'a>(
    rules: &'a [KernelRule],
    matching: &[&'a KernelRule],
    route: Option<&Route>,
) -> Option<&'a KernelRule> {
    let Some(route) = route else {
        return matching.iter().copied().find(|r| {
            matches!(
                r.action,
                RuleAction::Unreachable | RuleAction::Prohibit | RuleAction::Blackhole
            )
        });
    };
    let prefix_len = route.dst.map_or(0, |net| u32::from(net.prefix_len()));
    matching
        .iter()
        .copied()
        .find(|r| {
            r.action == RuleAction::ToTable
                && r.spec.table == route.table
                && r.other.suppress_prefixlen.is_none_or(|n| prefix_len > n)
        })
        .or_else(|| {
            if matches!(route.table, 253..=255) {
                None
            } else {
                rules.iter().find(|r| r.other.l3mdev)
            }
        })
}

/// Asks the kernel about `q` in the node's namespace, or in `--netns`'s:
/// its rules, the FIB entry that matched and the route it resolved. On the
/// node, a `--from` address that a policy steers inside its pod is named.
pub fn explain(q: &Query) -> Result<Report> {
    match &q.netns {
        Some(path) => crate::kernel::netns::Netns::open_pod(Some(path))?.run(|| explain_here(q)),
        None => {
            let mut report = explain_here(q)?;
            report.pod_side = q.from.and_then(|from| pod_side_of(&q.state_dir, from));
            Ok(report)
        }
    }
}

/// The attachment whose pod-side steering acts on packets from `from`, if
/// one does (a pod-side rule `from <from>`, or a pod-side connmark policy
/// on the attachment that has that address). The store is read without
/// its lock; anything unreadable is no answer.
fn pod_side_of(state_dir: &std::path::Path, from: IpAddr) -> Option<PodSide> {
    let host = IpNet::from(from);
    for network in crate::store::networks(state_dir).ok()? {
        let Ok(store) = crate::store::Store::open(state_dir, &network, crate::engine::LOCK_WAIT)
        else {
            continue;
        };
        let Ok((records, _)) = store.list() else {
            continue;
        };
        for r in records {
            let steered = r.objects.iter().any(|o| match o {
                crate::model::Object::Rule {
                    spec,
                    side: Side::Pod,
                } => spec.src == Some(host),
                _ => false,
            });
            if steered {
                return Some(PodSide {
                    network,
                    attachment: r.id.to_string(),
                    netns: r.netns.clone(),
                });
            }
        }
    }
    None
}

fn explain_here(q: &Query) -> Result<Report> {
    let mut kernel = NetlinkKernel::new(None)?;
    let iif = match &q.iif {
        Some(name) => Some(
            kernel
                .link_index(Side::Node, name)?
                .ok_or_else(|| Error::config(format!("--iif {name}: no such device")))?,
        ),
        None => None,
    };
    let rules = rules(&mut kernel, family_of(&q.dst))?;
    let matching: Vec<&KernelRule> = rules.iter().filter(|r| matches(r, q)).collect();
    let fib = ask(&mut kernel, get_route(q, iif, true))?;
    let resolved = ask(&mut kernel, get_route(q, iif, false))?;
    let route = match &fib {
        Ok(r) => Some(route_of(&mut kernel, r)?),
        Err(_) => None,
    };
    let rule = deciding_rule(&rules, &matching, route.as_ref());
    let chosen = match &resolved {
        Ok(r) => Some(chosen_of(&mut kernel, r)?),
        Err(_) => None,
    };
    let error = match (&fib, &resolved) {
        (Err(e), _) | (_, Err(e)) => Some(e.clone()),
        _ => None,
    };
    Ok(Report {
        chosen,
        error,
        query: q.clone(),
        table: route.as_ref().map(|r| r.table),
        table_name: route.as_ref().map(|r| r.table_name.clone()),
        route,
        rule: rule.map(MatchedRule::of),
        rules_matched: matching.iter().map(|r| r.spec.priority).collect(),
        pod_side: None,
    })
}
