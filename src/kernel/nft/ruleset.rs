//! What gwsteer wants in its nftables tables, as data: a [`Plan`] per policy
//! or exemption (sets, chains, rules as nft JSON), and the means to check it
//! against the kernel — cheaply from a netlink rule dump ([`Plan::quick_check`])
//! or fully from `nft -j list table` ([`Plan::compare`]) — and to turn it into
//! one atomic nft transaction ([`Plan::transaction`], [`Plan::removal`]).
//!
//! Naming. One `inet` table per network, `gwsteer-<network>`. Inside it,
//! everything of policy `p` is named `p` or `p_<suffix>`: policy names are
//! `[a-z0-9-]`, so the `_` keeps `p_in` (connmark ingress chain of `p`) apart
//! from a policy called `p-in`, and `p_to_v4` apart from the members of a
//! policy called `p-to`. Exemption chains are `masq_exempt_<cidrs>` for the
//! same reason.
//!
//! Fingerprint. Every rule of a plan carries the comment
//! `gwsteer <network>/<policy> #<digest>` (exemption: `gwsteer <network>
//! masquerade exemption #<digest>`), where the digest hashes the plan's
//! typed chains, rules and constant-set contents and [`RULESET_VERSION`]. A
//! rule dump therefore tells whether the kernel holds exactly this plan —
//! spec changes included — without decoding expressions. The egress and
//! exclude sets are `constant`: the kernel refuses element changes while a
//! rule uses them, so their contents cannot drift under the digest.
//!
//! Plans are typed ([`Stmt`]) and rendered to nft JSON only when `nft` is
//! about to run: building JSON values costs tens of microseconds, which the
//! every-ADD check cannot afford.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use ipnet::IpNet;

use super::messages::DumpedRule;
use super::view::ranges_of;
pub use super::view::{SetView, TableView};
use crate::error::{Error, Result};
use crate::model::{Family, Presence};
use crate::model::{FwExemption, FwPolicy, FwScope, Marking, MemberSet};

/// Every table gwsteer makes is named so; cleanup deletes exactly these.
pub const TABLE_PREFIX: &str = "gwsteer-";
/// The nft family of gwsteer's tables.
pub const FAMILY: &str = "inet";
/// Prefix of the nat chains that exempt CIDRs from every later masquerade:
/// one chain per exemption object (see [`exemption_chain`]), so that the
/// exemptions of a dual-stack pod's two subnets live side by side.
pub const EXEMPTION_CHAIN: &str = "masq_exempt";

/// `masq_exempt_10.20.0.0_24` (several CIDRs joined by `+`, IPv6 colons as
/// dots): readable, unique per CIDR set, and never a policy's name (those
/// have no `_`).
pub fn exemption_chain(e: &FwExemption) -> String {
    let mut cidrs: Vec<String> = e
        .cidrs
        .iter()
        .map(|c| c.trunc().to_string().replace('/', "_").replace(':', "."))
        .collect();
    cidrs.sort();
    format!("{EXEMPTION_CHAIN}_{}", cidrs.join("+"))
}

/// `NF_IP_PRI_MANGLE`: marks set here are seen by the routing decision.
const PRIO_MANGLE: i64 = -150;
/// `NF_IP_PRI_NAT_DST`; connmark's ingress chain runs after it (+10), so a
/// DNAT to the pod (kube-proxy, a LoadBalancer) has already happened.
const PRIO_DSTNAT: i64 = -100;
/// `NF_IP_PRI_NAT_SRC`; the exemption runs before it (−10), so its identity
/// mapping is the first NAT decision for the connection.
const PRIO_SRCNAT: i64 = 100;
/// `NFTA_LOOKUP_SET`.
pub const NFTA_LOOKUP_SET: u16 = 1;
/// The longest rule comment nft accepts (`NFTNL_UDATA_COMMENT_MAXLEN` − 1).
const MAX_COMMENT: usize = 127;
/// Part of every fingerprint. Bump it whenever the rendering of a
/// [`Stmt`], set or chain to nft JSON changes, so that installed rules are
/// recognised as outdated and re-made (the `rendering_is_pinned` test
/// fails until this is done).
pub const RULESET_VERSION: u32 = 3;

pub fn table_name(network: &str) -> String {
    format!("{TABLE_PREFIX}{network}")
}

/// The member set of `policy` for one address family.
pub fn member_set(policy: &str, family: Family) -> String {
    format!("{policy}_{}", suffix(family))
}

/// The set of `policy` that holds elements of kind `set`, for one family:
/// `p_v4` (pods), `p_net_v4` (pod subnets), `p_out_v4` (opted-out pods).
pub fn element_set(policy: &str, set: MemberSet, family: Family) -> String {
    match set {
        MemberSet::Pod => member_set(policy, family),
        MemberSet::Subnet => format!("{policy}_net_{}", suffix(family)),
        MemberSet::OptOut => format!("{policy}_out_{}", suffix(family)),
    }
}

/// The sets a policy's members are matched by, and how: the statements
/// that say "the `field` address is a member of `p`" for one family.
fn member_match(p: &FwPolicy, family: Family, field: Field) -> Vec<Stmt> {
    match p.scope {
        FwScope::Pod => vec![in_set(family, field, member_set(&p.policy, family), false)],
        FwScope::Subnet => vec![
            in_set(
                family,
                field,
                element_set(&p.policy, MemberSet::Subnet, family),
                false,
            ),
            in_set(
                family,
                field,
                element_set(&p.policy, MemberSet::OptOut, family),
                true,
            ),
        ],
    }
}

/// The member sets of a policy (both families): per pod, or subnets and
/// opt-outs.
fn member_sets(p: &FwPolicy) -> Vec<SetDef> {
    let kinds: &[MemberSet] = match p.scope {
        FwScope::Pod => &[MemberSet::Pod],
        FwScope::Subnet => &[MemberSet::Subnet, MemberSet::OptOut],
    };
    kinds
        .iter()
        .flat_map(|&kind| {
            FAMILIES.iter().map(move |&family| SetDef {
                name: element_set(&p.policy, kind, family),
                family,
                constant: None,
                subnets: kind == MemberSet::Subnet,
            })
        })
        .collect()
}

fn suffix(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

fn key_type(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// A set of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDef {
    pub name: String,
    pub family: Family,
    /// `None`: a member set, whose elements are the pods' (or their
    /// subnets') and never touched by a plan. `Some`: a constant interval
    /// set with exactly these CIDRs.
    pub constant: Option<Vec<IpNet>>,
    /// A member set of pod subnets (an interval set), not of addresses.
    pub subnets: bool,
}

/// By hand: `subnets` counts only when set, so that the fingerprints of
/// the plans made before it existed stay as they were.
impl Hash for SetDef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.family.hash(state);
        self.constant.hash(state);
        if self.subnets {
            self.subnets.hash(state);
        }
    }
}

/// A base chain of a plan and its rules.
#[derive(Debug, Clone, Hash)]
pub struct ChainDef {
    pub name: String,
    pub kind: &'static str,
    pub hook: &'static str,
    pub prio: i64,
    pub rules: Vec<Vec<Stmt>>,
}

/// Which address a match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Saddr,
    Daddr,
}

/// Which mark a statement sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkOf {
    /// The packet's (`meta mark`): what `ip rule fwmark` sees.
    Packet,
    /// The connection's (`ct mark`).
    Conn,
}

/// One statement of a rule (the nft syntax in each comment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// `ip saddr @set`, `ip6 daddr != @set`…
    InSet {
        family: Family,
        field: Field,
        set: String,
        negate: bool,
    },
    /// `ip saddr { cidr, … }` (one CIDR without braces).
    InCidrs {
        family: Family,
        field: Field,
        cidrs: Vec<IpNet>,
    },
    /// `iifname { "a", … }` (one name without braces).
    IifName(Vec<String>),
    /// `ct state new`
    CtStateNew,
    /// `ct direction reply`
    CtReply,
    /// `ct mark & mask == mark` (no `& mask` for a full mask).
    CtMarkIs { mark: u32, mask: u32 },
    /// `meta mark set (meta mark & ~mask) | mark`, or `ct mark set …`;
    /// plain `… mark set mark` for a full mask. Bits outside the mask are
    /// left to their owners (kube-proxy and CNIs use some of the packet mark).
    SetMark { of: MarkOf, mark: u32, mask: u32 },
    /// `snat ip to ip saddr`: a mapping that changes nothing.
    SnatToSelf { family: Family },
}

impl Stmt {
    /// The named set the statement looks up, if any.
    pub fn set_ref(&self) -> Option<&str> {
        match self {
            Stmt::InSet { set, .. } => Some(set),
            _ => None,
        }
    }
}

/// Everything one policy or exemption needs in its network's table.
#[derive(Debug, Clone)]
pub struct Plan {
    pub table: String,
    /// What the plan is, for messages ("firewall policy net/p").
    pub what: String,
    /// The comment every rule of the plan carries, fingerprint included.
    pub comment: String,
    pub sets: Vec<SetDef>,
    pub chains: Vec<ChainDef>,
    /// Every set and chain name this owner may have made under any spec;
    /// the ones not in `sets`/`chains` are stale and go on repair.
    pub owned_sets: Vec<String>,
    pub owned_chains: Vec<String>,
}

/// The plan of a steering policy.
pub fn policy_plan(p: &FwPolicy) -> Result<Plan> {
    check_name("network", &p.network)?;
    check_name("policy", &p.policy)?;
    if p.policy.contains('_') {
        return Err(Error::config(format!(
            "firewall policy name {:?} may not contain '_'",
            p.policy
        )));
    }
    if p.mark & p.mask == 0 {
        return Err(Error::config(format!(
            "firewall policy {}/{}: mark {:#x}/{:#x} sets no bits",
            p.network, p.policy, p.mark, p.mask
        )));
    }
    let mark = p.mark & p.mask;
    let mut sets = member_sets(p);
    let mut chains = Vec::new();
    match &p.marking {
        Marking::Mark { egress_to, exclude } => {
            let mut rules = Vec::new();
            for family in FAMILIES {
                let mut rule = member_match(p, family, Field::Saddr);
                if !egress_to.is_empty() {
                    // A family without egress CIDRs gets an empty set: its
                    // rule then matches nothing (egress only to the listed
                    // destinations), and every member set stays referenced
                    // by a rule, which the cheap check relies on.
                    let name = format!("{}_to_{}", p.policy, suffix(family));
                    rule.push(in_set(family, Field::Daddr, name.clone(), false));
                    sets.push(SetDef {
                        name,
                        family,
                        constant: Some(of_family(egress_to, family)),
                        subnets: false,
                    });
                }
                let excluded = of_family(exclude, family);
                if !excluded.is_empty() {
                    let name = format!("{}_ex_{}", p.policy, suffix(family));
                    rule.push(in_set(family, Field::Daddr, name.clone(), true));
                    sets.push(SetDef {
                        name,
                        family,
                        constant: Some(excluded),
                        subnets: false,
                    });
                }
                rule.push(Stmt::SetMark {
                    of: MarkOf::Packet,
                    mark,
                    mask: p.mask,
                });
                rules.push(rule);
            }
            chains.push(ChainDef {
                name: p.policy.clone(),
                kind: "filter",
                hook: "prerouting",
                prio: PRIO_MANGLE,
                rules,
            });
        }
        Marking::Connmark { ingress } => {
            if ingress.is_empty() {
                return Err(Error::config(format!(
                    "firewall policy {}/{}: connmark needs at least one ingress interface",
                    p.network, p.policy
                )));
            }
            // Sorted: the order means nothing to the kernel (and nft lists
            // anonymous sets in its own order); the fingerprint must not
            // change with it.
            let ingress: Vec<String> = ingress
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let rules = FAMILIES
                .into_iter()
                .map(|family| {
                    let mut rule = vec![Stmt::IifName(ingress.clone()), Stmt::CtStateNew];
                    rule.extend(member_match(p, family, Field::Daddr));
                    rule.push(Stmt::SetMark {
                        of: MarkOf::Conn,
                        mark,
                        mask: p.mask,
                    });
                    rule
                })
                .collect();
            chains.push(ChainDef {
                name: format!("{}_in", p.policy),
                kind: "filter",
                hook: "prerouting",
                prio: PRIO_DSTNAT + 10,
                rules,
            });
            // Only reply-direction packets: the pod's answers. The client's
            // own later packets carry the same ct mark but travel in the
            // original direction; marking them would route them to the
            // gateway instead of the pod. Pod-initiated connections never
            // get the ct mark, so nothing of theirs matches.
            chains.push(ChainDef {
                name: p.policy.clone(),
                kind: "filter",
                hook: "prerouting",
                prio: PRIO_MANGLE,
                rules: vec![vec![
                    Stmt::CtReply,
                    Stmt::CtMarkIs { mark, mask: p.mask },
                    Stmt::SetMark {
                        of: MarkOf::Packet,
                        mark,
                        mask: p.mask,
                    },
                ]],
            });
        }
    }
    let mut owned_sets = Vec::new();
    for kind in ["", "_to", "_ex", "_net", "_out"] {
        for family in FAMILIES {
            owned_sets.push(format!("{}{kind}_{}", p.policy, suffix(family)));
        }
    }
    Ok(Plan::new(
        table_name(&p.network),
        format!("firewall policy {}/{}", p.network, p.policy),
        format!("gwsteer {}/{}", p.network, p.policy),
        sets,
        chains,
        owned_sets,
        vec![p.policy.clone(), format!("{}_in", p.policy)],
    ))
}

/// The plan of a masquerade exemption: a nat chain before srcnat whose rules
/// map the exempt sources to themselves. The first nat chain that sets up a
/// mapping for a new connection decides its NAT, whichever of
/// iptables-legacy, iptables-nft or nftables the later chains belong to; an
/// identity mapping decides "no change".
pub fn exemption_plan(e: &FwExemption) -> Result<Plan> {
    check_name("network", &e.network)?;
    if e.cidrs.is_empty() {
        return Err(Error::config(format!(
            "masquerade exemption {}: no CIDRs",
            e.network
        )));
    }
    let rules = FAMILIES
        .into_iter()
        .map(|family| (family, of_family(&e.cidrs, family)))
        .filter(|(_, cidrs)| !cidrs.is_empty())
        .map(|(family, cidrs)| {
            vec![
                Stmt::InCidrs {
                    family,
                    field: Field::Saddr,
                    cidrs,
                },
                Stmt::SnatToSelf { family },
            ]
        })
        .collect();
    let chain = exemption_chain(e);
    Ok(Plan::new(
        table_name(&e.network),
        format!("masquerade exemption {} ({chain})", e.network),
        format!("gwsteer {} masquerade exemption", e.network),
        Vec::new(),
        vec![ChainDef {
            name: chain.clone(),
            kind: "nat",
            hook: "postrouting",
            prio: PRIO_SRCNAT - 10,
            rules,
        }],
        Vec::new(),
        vec![chain],
    ))
}

/// Names go to nft as JSON strings, so any character would do; these are
/// the ones gwsteer's networks and policies use, and they keep `nft list`
/// output readable and re-parsable.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{what} name {name:?} cannot name a firewall object (letters, digits, '_', '.', '-')"
        )))
    }
}

/// The CIDRs of one family, host bits cleared, overlaps merged.
fn of_family(cidrs: &[IpNet], family: Family) -> Vec<IpNet> {
    let mine: Vec<IpNet> = cidrs
        .iter()
        .filter(|c| Family::of_net(c) == family)
        .map(IpNet::trunc)
        .collect();
    IpNet::aggregate(&mine)
}

fn in_set(family: Family, field: Field, set: String, negate: bool) -> Stmt {
    Stmt::InSet {
        family,
        field,
        set,
        negate,
    }
}

/// 64-bit FNV-1a: deterministic, unlike std's randomly keyed hasher.
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn fnv() -> Fnv {
    Fnv(0xcbf2_9ce4_8422_2325)
}

impl Plan {
    fn new(
        table: String,
        what: String,
        owner: String,
        sets: Vec<SetDef>,
        chains: Vec<ChainDef>,
        owned_sets: Vec<String>,
        owned_chains: Vec<String>,
    ) -> Plan {
        let mut plan = Plan {
            table,
            what,
            comment: String::new(),
            sets,
            chains,
            owned_sets,
            owned_chains,
        };
        let mut digest = fnv();
        RULESET_VERSION.hash(&mut digest);
        plan.sets.hash(&mut digest);
        plan.chains.hash(&mut digest);
        // nft keeps at most 127 bytes of comment. The owner part is for
        // people (identity is in the table's name); it gives way to the
        // fingerprint. Names are ASCII, so any byte is a char boundary.
        let owner = if owner.len() > MAX_COMMENT - 18 {
            format!("{}...", &owner[..MAX_COMMENT - 21])
        } else {
            owner
        };
        plan.comment = format!("{owner} #{:016x}", digest.finish());
        plan
    }
}

mod change;
mod check;
mod pod;
#[cfg(test)]
mod render;
#[cfg(test)]
mod tests;

pub use change::{Change, Transaction, set_flags};
pub use pod::pod_connmark_plan;
