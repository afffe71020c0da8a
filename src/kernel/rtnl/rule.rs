//! Policy routing rules: `ip rule add/del`, read back with one dump (one
//! family, or both at once), and the one parser of the kernel's rule messages (explain uses
//! it too).

use super::*;

impl NetlinkKernel {
    pub(super) fn ensure_rule(&mut self, side: Side, spec: &RuleSpec) -> Result<(), NlError> {
        let msg = RouteNetlinkMessage::NewRule(rule_message(spec));
        match self.request(side, msg, Req::Change(NLM_F_CREATE | NLM_F_EXCL)) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::EEXIST as i32) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn remove_rule(&mut self, side: Side, spec: &RuleSpec) -> Result<(), NlError> {
        // Same selectors, priority, table and protocol as the add: the kernel
        // deletes only a rule matching all of them, so never someone else's.
        let msg = RouteNetlinkMessage::DelRule(rule_message(spec));
        match self.request(side, msg, Req::Change(0)) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::ENOENT as i32) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn observe_rule(
        &mut self,
        side: Side,
        spec: &RuleSpec,
    ) -> Result<Presence, NlError> {
        // Rule dumps cannot be filtered in the kernel; one family is read,
        // and only the rules at the rule's priority are parsed.
        let want = RuleIdentity::of(spec);
        let at = spec.priority;
        let found = self
            .dump_rules_kept(side, Some(spec.family), |_, priority| priority == at)?
            .iter()
            .any(|r| {
                r.plain && r.action == RuleAction::ToTable && RuleIdentity::of(&r.spec) == want
            });
        Ok(if found {
            Presence::Present
        } else {
            Presence::Missing
        })
    }

    /// gwsteer's fwmark rules in the pod's namespace (a pod holds a handful
    /// of rules: one dump of both families, whatever the node holds).
    pub(crate) fn pod_fwmark_rules(&mut self) -> Result<Vec<RuleSpec>> {
        let rules = self.rules_where(Side::Pod, |r| {
            r.protocol == RTPROT_GWSTEER && r.spec.fwmark.is_some()
        })?;
        Ok(rules.into_iter().map(|r| r.spec).collect())
    }

    /// gwsteer's rules in the node's namespace that point at one of
    /// `tables` or sit at one of `priorities`, both families in one dump.
    /// The dump is read in place and only such rules parsed: on a node of
    /// 1000 pods (5000 rules) a policy's first ADD asks this, and the other
    /// rules cost their bytes, not a parse each.
    pub(super) fn gwsteer_rules_at(
        &mut self,
        tables: &[u32],
        priorities: &[u32],
    ) -> Result<Vec<RuleSpec>> {
        let at =
            |table: u32, priority: u32| tables.contains(&table) || priorities.contains(&priority);
        let rules = self
            .dump_rules_kept(Side::Node, None, at)
            .map_err(|e| e.into_error("reading the node's rules"))?;
        Ok(rules
            .into_iter()
            .filter(|r| {
                r.action == RuleAction::ToTable
                    && r.protocol == RTPROT_GWSTEER
                    && at(r.spec.table, r.spec.priority)
            })
            .map(|r| r.spec)
            .collect())
    }

    /// The rules to a table, of both families, on `side` that `keep` takes.
    pub(super) fn rules_where(
        &mut self,
        side: Side,
        keep: impl Fn(&KernelRule) -> bool,
    ) -> Result<Vec<KernelRule>> {
        let whose = match side {
            Side::Node => "node",
            Side::Pod => "pod",
        };
        let rules = self
            .dump_rules_kept(side, None, |_, _| true)
            .map_err(|e| e.into_error(format_args!("reading the {whose}'s rules")))?;
        Ok(rules
            .into_iter()
            .filter(|r| r.action == RuleAction::ToTable && keep(r))
            .collect())
    }

    /// The rules of one family or (`None`) of both in one dump, parsing
    /// only the rules whose (table, priority), read in place, `keep` takes
    /// (and, of both, only IPv4's and IPv6's: an AF_UNSPEC dump also
    /// brings the multicast routing rules).
    pub(super) fn dump_rules_kept(
        &mut self,
        side: Side,
        family: Option<Family>,
        keep: impl Fn(u32, u32) -> bool,
    ) -> Result<Vec<KernelRule>, NlError> {
        let mut msg = RuleMessage::default();
        msg.header.family = family.map_or(AddressFamily::Unspec, address_family);
        let ours = |whole: &[u8]| {
            let byte = nl::Msg::of(whole).and_then(|m| m.body.first().copied());
            byte.is_none_or(|f| i32::from(f) == libc::AF_INET || i32::from(f) == libc::AF_INET6)
        };
        let keep =
            |whole: &[u8]| ours(whole) && table_and_priority(whole).is_none_or(|(t, p)| keep(t, p));
        let answer =
            match self.request_kept(side, RouteNetlinkMessage::GetRule(msg), Req::Dump, keep) {
                Ok(answer) => answer,
                // No IPv6 in this kernel: no IPv6 rules either.
                Err(e)
                    if family == Some(Family::V6)
                        && e.errno() == Some(Errno::EAFNOSUPPORT as i32) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            };
        Ok(answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(rule) => rule_from_message(rule),
                _ => None,
            })
            .filter(|r| family.is_none_or(|f| r.spec.family == f))
            .collect())
    }
}

/// `sizeof(struct fib_rule_hdr)`; its table byte, and the attributes that
/// say the table (above 255) and the priority.
const FIB_RULE_HDR_LEN: usize = 12;
const FIB_RULE_HDR_TABLE: usize = 4;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;

/// The table and priority of a rule message, read in place; `None` for a
/// message that is not a rule (left to the parser to judge).
fn table_and_priority(whole: &[u8]) -> Option<(u32, u32)> {
    let msg = nl::Msg::of(whole)?;
    if msg.kind != libc::RTM_NEWRULE {
        return None;
    }
    let header = msg.body.get(..FIB_RULE_HDR_LEN)?;
    let attrs = nl::Attrs(&msg.body[FIB_RULE_HDR_LEN..]);
    let u32_of = |b: &[u8]| {
        b.get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let table = attrs
        .get(FRA_TABLE)
        .and_then(u32_of)
        .unwrap_or(u32::from(header[FIB_RULE_HDR_TABLE]));
    // The rule at priority 0 (`local`) carries no priority attribute.
    let priority = attrs.get(FRA_PRIORITY).and_then(u32_of).unwrap_or(0);
    Some((table, priority))
}

/// A prefix of length 0 selects nothing; the kernel does not report it.
pub(super) fn selector(net: Option<IpNet>) -> Option<IpNet> {
    net.filter(|n| n.prefix_len() > 0)
}

pub(super) fn rule_message(spec: &RuleSpec) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = address_family(spec.family);
    msg.header.table = table_byte(spec.table);
    msg.header.action = RuleAction::ToTable;
    if let Some(src) = selector(spec.src) {
        msg.header.src_len = src.prefix_len();
        msg.attributes.push(RuleAttribute::Source(src.addr()));
    }
    if let Some(dst) = selector(spec.dst) {
        msg.header.dst_len = dst.prefix_len();
        msg.attributes.push(RuleAttribute::Destination(dst.addr()));
    }
    msg.attributes.push(RuleAttribute::Priority(spec.priority));
    msg.attributes.push(RuleAttribute::Table(spec.table));
    if let Some(mark) = spec.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(mark));
    }
    if let Some(mask) = spec.fwmask {
        msg.attributes.push(RuleAttribute::FwMask(mask));
    }
    if let Some(iif) = &spec.iif {
        msg.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_GWSTEER)));
    msg
}

/// A rule as the kernel compares it.
#[derive(PartialEq, Eq, Debug)]
pub(super) struct RuleIdentity {
    family: Family,
    priority: u32,
    src: Option<IpNet>,
    dst: Option<IpNet>,
    mark: u32,
    mask: u32,
    iif: Option<String>,
    table: u32,
}

impl RuleIdentity {
    pub(super) fn of(spec: &RuleSpec) -> RuleIdentity {
        let mark = spec.fwmark.unwrap_or(0);
        // The kernel gives a mark without a mask the mask 0xffffffff.
        let mask = spec.fwmask.unwrap_or(if mark != 0 { u32::MAX } else { 0 });
        RuleIdentity {
            family: spec.family,
            priority: spec.priority,
            src: selector(spec.src),
            dst: selector(spec.dst),
            mark,
            mask,
            iif: spec.iif.clone(),
            table: spec.table,
        }
    }
}

/// A dumped rule.
pub(crate) struct KernelRule {
    pub(crate) spec: RuleSpec,
    pub(crate) protocol: u8,
    pub(crate) action: RuleAction,
    /// False when the rule has selectors a [`RuleSpec`] cannot express
    /// (oif, ipproto, ports, uid range, tos, `not`…).
    plain: bool,
    /// Those of them `gwsteer explain` evaluates or shows.
    pub(crate) other: OtherSelectors,
}

/// What a rule selects on beyond a [`RuleSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OtherSelectors {
    /// `not`: the rule applies where its selectors do not match.
    pub(crate) invert: bool,
    pub(crate) tos: u8,
    pub(crate) oif: Option<String>,
    pub(crate) uid_range: Option<(u32, u32)>,
    /// `suppress_prefixlength` (the kernel's -1, unset, as `None`).
    pub(crate) suppress_prefixlen: Option<u32>,
    /// Looks up the table of the packet's L3 master device (a VRF).
    pub(crate) l3mdev: bool,
    pub(crate) ip_proto: Option<netlink_packet_route::IpProtocol>,
    pub(crate) sport: Option<(u16, u16)>,
    pub(crate) dport: Option<(u16, u16)>,
}

pub(super) fn other_selectors(msg: &RuleMessage) -> OtherSelectors {
    let mut other = OtherSelectors {
        invert: msg.header.flags.contains(RuleFlags::Invert),
        tos: msg.header.tos,
        ..OtherSelectors::default()
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Oifname(name) => other.oif = Some(name.clone()),
            RuleAttribute::UidRange(u) => other.uid_range = Some((u.start, u.end)),
            RuleAttribute::SuppressPrefixLen(n) if *n != u32::MAX => {
                other.suppress_prefixlen = Some(*n)
            }
            RuleAttribute::L3MDev(on) => other.l3mdev = *on,
            RuleAttribute::IpProtocol(p) => other.ip_proto = Some(*p),
            RuleAttribute::SourcePortRange(p) => other.sport = Some((p.start, p.end)),
            RuleAttribute::DestinationPortRange(p) => other.dport = Some((p.start, p.end)),
            _ => {}
        }
    }
    other
}

/// A dumped rule message as a rule, `None` if it is of neither IP family.
pub(crate) fn rule_from_message(msg: &RuleMessage) -> Option<KernelRule> {
    let family = family_of(msg.header.family)?;
    let mut spec = RuleSpec {
        family,
        priority: 0,
        src: None,
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        table: u32::from(msg.header.table),
    };
    let mut protocol = 0;
    let mut plain = msg.header.tos == 0 && !msg.header.flags.contains(RuleFlags::Invert);
    let mut mark = None;
    let mut mask = None;
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Source(ip) => spec.src = IpNet::new(*ip, msg.header.src_len).ok(),
            RuleAttribute::Destination(ip) => spec.dst = IpNet::new(*ip, msg.header.dst_len).ok(),
            RuleAttribute::Iifname(name) => spec.iif = Some(name.clone()),
            RuleAttribute::Priority(p) => spec.priority = *p,
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::Table(t) => spec.table = *t,
            RuleAttribute::Protocol(p) => protocol = u8::from(*p),
            // The kernel reports these on every rule, -1 meaning "unset".
            RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            _ => plain = false,
        }
    }
    if mark.is_some() || mask.is_some() {
        spec.fwmark = Some(mark.unwrap_or(0));
        spec.fwmask = mask.filter(|m| *m != u32::MAX);
    }
    Some(KernelRule {
        spec,
        protocol,
        action: msg.header.action,
        plain,
        other: other_selectors(msg),
    })
}
