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

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{RouteAttribute, RouteFlags, RouteMessage, RouteNextHop};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::netlink::{NetlinkKernel, address_family, route_ip, via_ip};
use crate::objects::{Family, RTPROT_GWSTEER, Side, TABLE_MAIN};

const USAGE: &str = "usage: gwsteer explain <ip> [--from <ip>] [--iif <dev>] [--mark <m>] [--json]

The path a packet to <ip> takes on this node: the policy rule that matched
(priority, selectors, whether gwsteer made it), the table, the route (prefix,
nexthops and multipath weights), and the nexthop and device chosen.
  --from <ip>   the packet's source address (a pod's address)
  --iif <dev>   the device it came in on (cni0 for a pod's packet); without
                it the packet is one the node itself sends
  --mark <m>    its firewall mark (decimal or 0x hex)
  --json        one JSON object instead of text";

/// The packet asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub dst: IpAddr,
    pub from: Option<IpAddr>,
    pub iif: Option<String>,
    pub mark: Option<u32>,
    pub json: bool,
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
        json: false,
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
            "--state-dir" => {
                value("--state-dir")?;
            }
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
                println!("{report}");
            } else {
                print!("{}", text(&report));
            }
            if report["route"].is_null() { 1 } else { 0 }
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

/// Table names as iproute2 prints them.
fn table_name(table: u32) -> String {
    match table {
        253 => "default".into(),
        TABLE_MAIN => "main".into(),
        255 => "local".into(),
        other => other.to_string(),
    }
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

/// A dumped rule, with the selectors the kernel matches on.
#[derive(Debug, Clone, Default)]
struct Rule {
    priority: u32,
    src: Option<IpNet>,
    dst: Option<IpNet>,
    iif: Option<String>,
    oif: Option<String>,
    fwmark: Option<u32>,
    fwmask: Option<u32>,
    tos: u8,
    invert: bool,
    table: u32,
    action: RuleAction,
    protocol: u8,
    /// Selectors explain cannot evaluate for a bare packet (IP protocol,
    /// ports, L3 master device): such a rule is taken as not matching.
    unmatched: Vec<String>,
    uid_range: Option<(u32, u32)>,
    suppress_prefixlen: Option<u32>,
}

fn rule_of(msg: &RuleMessage) -> Rule {
    let mut r = Rule {
        tos: msg.header.tos,
        invert: msg.header.flags.contains(RuleFlags::Invert),
        table: u32::from(msg.header.table),
        action: msg.header.action,
        ..Rule::default()
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => r.priority = *p,
            RuleAttribute::Source(a) => r.src = IpNet::new(*a, msg.header.src_len).ok(),
            RuleAttribute::Destination(a) => r.dst = IpNet::new(*a, msg.header.dst_len).ok(),
            RuleAttribute::Iifname(n) => r.iif = Some(n.clone()),
            RuleAttribute::Oifname(n) => r.oif = Some(n.clone()),
            RuleAttribute::FwMark(m) => r.fwmark = Some(*m),
            RuleAttribute::FwMask(m) => r.fwmask = Some(*m),
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::Protocol(p) => r.protocol = u8::from(*p),
            RuleAttribute::UidRange(u) => r.uid_range = Some((u.start, u.end)),
            RuleAttribute::SuppressPrefixLen(n) if *n != u32::MAX => {
                r.suppress_prefixlen = Some(*n)
            }
            RuleAttribute::L3MDev(true) => r.unmatched.push("l3mdev".into()),
            RuleAttribute::IpProtocol(p) => r.unmatched.push(format!("ipproto {p:?}")),
            RuleAttribute::SourcePortRange(p) => {
                r.unmatched.push(format!("sport {}-{}", p.start, p.end))
            }
            RuleAttribute::DestinationPortRange(p) => {
                r.unmatched.push(format!("dport {}-{}", p.start, p.end))
            }
            _ => {}
        }
    }
    r
}

impl Rule {
    /// Whether the kernel's `fib_rule_match` takes this rule for `q`.
    fn matches(&self, q: &Query) -> bool {
        if !self.unmatched.is_empty() {
            return false;
        }
        // The kernel gives a locally sent packet iif "lo".
        let iif = q.iif.as_deref().unwrap_or("lo");
        let mut hit = true;
        if let Some(want) = &self.iif {
            hit &= want == iif;
        }
        // Neither an arriving packet nor `ip route get` has an output device
        // when rules are walked.
        if self.oif.is_some() {
            hit = false;
        }
        if self.fwmark.is_some() || self.fwmask.is_some() {
            let mask = self.fwmask.unwrap_or(u32::MAX);
            hit &= (q.mark.unwrap_or(0) ^ self.fwmark.unwrap_or(0)) & mask == 0;
        }
        if let Some((start, end)) = self.uid_range {
            hit &= start == 0 || end < start || (start..=end).contains(&0);
        }
        if let Some(net) = &self.src
            && net.prefix_len() > 0
        {
            hit &= q.from.is_some_and(|a| net.contains(&a));
        }
        if let Some(net) = &self.dst
            && net.prefix_len() > 0
        {
            hit &= net.contains(&q.dst);
        }
        if self.tos != 0 {
            hit = false;
        }
        hit != self.invert
    }

    fn selectors(&self) -> Value {
        let mut s = serde_json::Map::new();
        if self.invert {
            s.insert("not".into(), json!(true));
        }
        if let Some(n) = &self.src {
            s.insert("from".into(), json!(n.to_string()));
        }
        if let Some(n) = &self.dst {
            s.insert("to".into(), json!(n.to_string()));
        }
        if let Some(d) = &self.iif {
            s.insert("iif".into(), json!(d));
        }
        if let Some(d) = &self.oif {
            s.insert("oif".into(), json!(d));
        }
        if let Some(m) = self.fwmark {
            s.insert("fwmark".into(), json!(format!("{m:#x}")));
        }
        if let Some(m) = self.fwmask {
            s.insert("fwmask".into(), json!(format!("{m:#x}")));
        }
        if self.tos != 0 {
            s.insert("tos".into(), json!(self.tos));
        }
        for u in &self.unmatched {
            s.insert(u.clone(), json!(true));
        }
        Value::Object(s)
    }

    /// `from 10.244.1.5 lookup 100` as `ip rule` prints it.
    fn text(&self) -> String {
        let mut words = Vec::new();
        if self.invert {
            words.push("not".to_string());
        }
        match &self.src {
            Some(n) if n.prefix_len() == n.max_prefix_len() => {
                words.push(format!("from {}", n.addr()))
            }
            Some(n) if n.prefix_len() > 0 => words.push(format!("from {n}")),
            _ => words.push("from all".into()),
        }
        match &self.dst {
            Some(n) if n.prefix_len() == n.max_prefix_len() => {
                words.push(format!("to {}", n.addr()))
            }
            Some(n) if n.prefix_len() > 0 => words.push(format!("to {n}")),
            _ => {}
        }
        if let Some(m) = self.fwmark {
            match self.fwmask {
                Some(mask) if mask != u32::MAX => words.push(format!("fwmark {m:#x}/{mask:#x}")),
                _ => words.push(format!("fwmark {m:#x}")),
            }
        }
        if let Some(d) = &self.iif {
            words.push(format!("iif {d}"));
        }
        if let Some(d) = &self.oif {
            words.push(format!("oif {d}"));
        }
        for u in &self.unmatched {
            words.push(u.clone());
        }
        match self.action {
            RuleAction::ToTable => words.push(format!("lookup {}", table_name(self.table))),
            other => words.push(format!("{other:?}").to_lowercase()),
        }
        if let Some(n) = self.suppress_prefixlen {
            words.push(format!("suppress_prefixlength {n}"));
        }
        words.join(" ")
    }

    fn json(&self) -> Value {
        json!({
            "priority": self.priority,
            "selectors": self.selectors(),
            "action": format!("{:?}", self.action).to_lowercase(),
            "table": self.table,
            "tableName": table_name(self.table),
            "protocol": self.protocol,
            "gwsteer": self.protocol == RTPROT_GWSTEER,
            "text": self.text(),
        })
    }
}

fn rules(kernel: &mut NetlinkKernel, family: AddressFamily) -> Result<Vec<Rule>> {
    let mut msg = RuleMessage::default();
    msg.header.family = family;
    let answer = kernel
        .node_query(RouteNetlinkMessage::GetRule(msg), true)
        .map_err(|b| b.1)?;
    let mut out: Vec<Rule> = answer
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRule(r) => Some(rule_of(r)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|r| r.priority);
    Ok(out)
}

fn hop_json(
    kernel: &mut NetlinkKernel,
    attrs: &[RouteAttribute],
    oif: Option<u32>,
    weight: Option<u32>,
) -> Result<Value> {
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
    let mut hop = json!({"via": via.map(|v| v.to_string()), "dev": dev});
    if let Some(w) = weight {
        hop["weight"] = json!(w);
    }
    Ok(hop)
}

fn route_json(kernel: &mut NetlinkKernel, r: &RouteMessage) -> Result<Value> {
    let mut dst = None;
    let mut table = u32::from(r.header.table);
    let mut metric = None;
    let mut multipath: Option<&Vec<RouteNextHop>> = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(m) => metric = Some(*m),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    let dst = match dst {
        Some(a) if r.header.destination_prefix_length > 0 => {
            format!("{a}/{}", r.header.destination_prefix_length)
        }
        _ => "default".to_string(),
    };
    let nexthops = match multipath {
        Some(hops) => hops
            .iter()
            .map(|h| {
                hop_json(
                    kernel,
                    &h.attributes,
                    Some(h.interface_index),
                    Some(u32::from(h.hops) + 1),
                )
            })
            .collect::<Result<Vec<_>>>()?,
        None => vec![hop_json(kernel, &r.attributes, None, None)?],
    };
    let protocol = u8::from(r.header.protocol);
    Ok(json!({
        "dst": dst,
        "type": format!("{:?}", r.header.kind).to_lowercase(),
        "table": table,
        "tableName": table_name(table),
        "protocol": protocol,
        "gwsteer": protocol == RTPROT_GWSTEER,
        "metric": metric,
        "nexthops": nexthops,
    }))
}

/// Asks the kernel about `q` and returns the report (the `--json` form):
/// `query`, `rule` (null if none matched), `table`, `route` (null if the
/// kernel has none: `error` says why), `chosen` (`via`, `dev`, `src`).
pub fn explain(q: &Query) -> Result<Value> {
    let mut kernel = NetlinkKernel::new(None)?;
    let iif = match &q.iif {
        Some(name) => Some(
            kernel
                .link_index(Side::Node, name)?
                .ok_or_else(|| Error::config(format!("--iif {name}: no such device")))?,
        ),
        None => None,
    };
    let query = json!({
        "dst": q.dst.to_string(),
        "from": q.from.map(|a| a.to_string()),
        "iif": q.iif,
        "mark": q.mark,
    });
    let rules = rules(&mut kernel, family_of(&q.dst))?;
    let matching: Vec<&Rule> = rules.iter().filter(|r| r.matches(q)).collect();
    let fib = ask(&mut kernel, get_route(q, iif, true))?;
    let resolved = ask(&mut kernel, get_route(q, iif, false))?;
    let (route, table, prefix_len) = match &fib {
        Ok(r) => {
            let v = route_json(&mut kernel, r)?;
            let t = v["table"].as_u64().unwrap_or(0) as u32;
            (v, Some(t), u32::from(r.header.destination_prefix_length))
        }
        Err(_) => (Value::Null, None, 0),
    };
    // The rule the walk stopped at: the first matching one that looks up the
    // route's table; without a route, the first matching one that ends the
    // walk (unreachable, prohibit, blackhole), if any.
    // A rule with suppress_prefixlength N passes on routes of prefix length
    // N or less (the walk goes on); a VRF's packets stop at the l3mdev rule,
    // whose table is the VRF's.
    let rule: Option<&Rule> = match table {
        Some(t) => matching
            .iter()
            .copied()
            .find(|r| {
                r.action == RuleAction::ToTable
                    && r.table == t
                    && r.suppress_prefixlen.is_none_or(|n| prefix_len > n)
            })
            .or_else(|| {
                if matches!(t, 253..=255) {
                    None
                } else {
                    rules
                        .iter()
                        .find(|r| r.unmatched.iter().any(|u| u == "l3mdev"))
                }
            }),
        None => matching.iter().copied().find(|r| {
            matches!(
                r.action,
                RuleAction::Unreachable | RuleAction::Prohibit | RuleAction::Blackhole
            )
        }),
    };
    let chosen = match &resolved {
        Ok(r) => {
            let mut src = None;
            for a in &r.attributes {
                if let RouteAttribute::PrefSource(p) = a {
                    src = route_ip(p);
                }
            }
            let mut hop = hop_json(&mut kernel, &r.attributes, None, None)?;
            hop["src"] = json!(src.map(|s| s.to_string()));
            hop["type"] = json!(format!("{:?}", r.header.kind).to_lowercase());
            hop
        }
        Err(_) => Value::Null,
    };
    let error = match (&fib, &resolved) {
        (Err(e), _) | (_, Err(e)) => Some(e.clone()),
        _ => None,
    };
    Ok(json!({
        "query": query,
        "rule": rule.map(|r| r.json()),
        "table": table,
        "tableName": table.map(table_name),
        "route": route,
        "chosen": chosen,
        "error": error,
        "rulesMatched": matching.iter().map(|r| r.priority).collect::<Vec<_>>(),
    }))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn hop_text(h: &Value) -> String {
    let mut t = String::new();
    if let Some(via) = h["via"].as_str() {
        t.push_str(&format!("via {via} "));
    }
    t.push_str(&format!("dev {}", s(&h["dev"])));
    if let Some(w) = h["weight"].as_u64() {
        t.push_str(&format!(" weight {w}"));
    }
    t
}

/// The report in words.
pub fn text(r: &Value) -> String {
    let q = &r["query"];
    let mut out = format!("packet to {}", s(&q["dst"]));
    if let Some(from) = q["from"].as_str() {
        out.push_str(&format!(" from {from}"));
    }
    match q["iif"].as_str() {
        Some(iif) => out.push_str(&format!(" arriving on {iif}")),
        None => out.push_str(" sent by the node"),
    }
    if let Some(m) = q["mark"].as_u64() {
        out.push_str(&format!(" with mark {m:#x}"));
    }
    out.push('\n');
    let rule = &r["rule"];
    if rule.is_null() {
        out.push_str("  rule     none identified\n");
    } else {
        let whose = if rule["gwsteer"] == true {
            format!("gwsteer's (protocol {RTPROT_GWSTEER})")
        } else {
            format!("not gwsteer's (protocol {})", rule["protocol"])
        };
        out.push_str(&format!(
            "  rule     {}: {}  [{whose}]\n",
            rule["priority"],
            s(&rule["text"])
        ));
    }
    let route = &r["route"];
    if route.is_null() {
        out.push_str(&format!(
            "  route    none: {}\n",
            r["error"].as_str().unwrap_or("no route")
        ));
        return out;
    }
    out.push_str(&format!("  table    {}\n", s(&r["tableName"])));
    let whose = if route["gwsteer"] == true {
        " (gwsteer's)"
    } else {
        ""
    };
    out.push_str(&format!(
        "  route    {} {} proto {}{whose}\n",
        s(&route["type"]),
        s(&route["dst"]),
        route["protocol"]
    ));
    let hops = route["nexthops"].as_array().cloned().unwrap_or_default();
    if hops.len() > 1 {
        for h in &hops {
            out.push_str(&format!("           nexthop {}\n", hop_text(h)));
        }
    }
    let chosen = &r["chosen"];
    if chosen.is_null() {
        out.push_str(&format!(
            "  chosen   none: {}\n",
            r["error"].as_str().unwrap_or("?")
        ));
    } else {
        let mut t = hop_text(chosen);
        if let Some(src) = chosen["src"].as_str() {
            t.push_str(&format!(" src {src}"));
        }
        out.push_str(&format!("  chosen   {t}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_selectors() {
        let q = parse(&args(&[
            "10.2.0.2",
            "--from",
            "10.244.1.5",
            "--iif",
            "cni0",
            "--mark",
            "0x10",
            "--json",
        ]))
        .unwrap();
        assert_eq!(q.dst, "10.2.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(q.from, Some("10.244.1.5".parse().unwrap()));
        assert_eq!(q.iif.as_deref(), Some("cni0"));
        assert_eq!(q.mark, Some(16));
        assert!(q.json);
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["10.0.0.1", "--from", "fd00::1"])).is_err());
        assert!(parse(&args(&["10.0.0.1", "--mark", "x"])).is_err());
        assert!(parse(&args(&["10.0.0.1", "10.0.0.2"])).is_err());
    }

    #[test]
    fn rule_matching_follows_the_kernel() {
        let q = Query {
            dst: "10.2.0.2".parse().unwrap(),
            from: Some("10.244.1.5".parse().unwrap()),
            iif: Some("cni0".into()),
            mark: None,
            json: false,
        };
        let mut r = Rule {
            src: Some("10.244.1.5/32".parse().unwrap()),
            ..Rule::default()
        };
        assert!(r.matches(&q));
        r.dst = Some("10.244.0.0/16".parse().unwrap());
        assert!(!r.matches(&q));
        r.invert = true;
        assert!(r.matches(&q));
        let lo = Rule {
            iif: Some("lo".into()),
            ..Rule::default()
        };
        assert!(!lo.matches(&q));
        let marked = Rule {
            fwmark: Some(0x10),
            fwmask: Some(0xf0),
            ..Rule::default()
        };
        assert!(!marked.matches(&q));
        assert!(marked.matches(&Query {
            mark: Some(0x11),
            ..q.clone()
        }));
    }
}
