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

/// One change of a transaction on a plan's table (nft's verbs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `add table` (an existing one stays as it is).
    AddTable,
    /// `create table`: the transaction fails (`EEXIST`) if it exists.
    CreateTable,
    DeleteTable,
    /// `add chain` without a hook: the chain exists afterwards, so the
    /// flush and delete that follow cannot fail on a missing one.
    TouchChain(String),
    /// `flush chain`: its rules go (a chain is deleted only when empty).
    FlushChain(String),
    DeleteChain(String),
    /// `add set` with the set's flags and, for a constant set, elements;
    /// `create set` (fails if it exists) when `new`.
    AddSet {
        set: SetDef,
        new: bool,
    },
    DeleteSet(String),
    /// `add chain` as a base chain with policy accept; `create chain`
    /// (fails if it exists) when `new`.
    AddChain {
        name: String,
        kind: &'static str,
        hook: &'static str,
        prio: i64,
        new: bool,
    },
    /// `add rule`, carrying the plan's comment.
    AddRule {
        chain: String,
        rule: Vec<Stmt>,
    },
}

/// Changes to one table, applied all or nothing.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub table: String,
    /// The comment of every rule added.
    pub comment: String,
    /// Member sets get `flags timeout`.
    pub timeouts: bool,
    pub changes: Vec<Change>,
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

/// The pod side of a `connmark` policy: a table of its own in the pod's
/// namespace per policy and interface (`gwsteer-<policy>-<ifname>`). New
/// connections arriving on `ifname` get `mark` (under `mask`) in conntrack;
/// the pod's own packets of a connection so marked get it on the packet in
/// the route hook of `output`, so the kernel routes them again by the pod's
/// fwmark rule, whatever source address the application chose. The
/// interface name is the pod's and may hold any byte Linux allows: it goes
/// to the kernel as bytes, matched exactly.
pub fn pod_connmark_plan(policy: &str, ifname: &str, mark: u32, mask: u32) -> Result<Plan> {
    check_name("policy", policy)?;
    if mark & mask == 0 {
        return Err(Error::config(format!(
            "pod-side connmark {policy}: mark {mark:#x}/{mask:#x} sets no bits"
        )));
    }
    let mark = mark & mask;
    Ok(Plan::new(
        format!("{TABLE_PREFIX}{policy}-{ifname}"),
        format!("pod-side connmark {policy} on {ifname:?}"),
        format!("gwsteer pod-side connmark {policy}"),
        Vec::new(),
        vec![
            ChainDef {
                name: "prerouting".into(),
                kind: "filter",
                hook: "prerouting",
                prio: PRIO_MANGLE,
                rules: vec![vec![
                    Stmt::IifName(vec![ifname.to_string()]),
                    Stmt::CtStateNew,
                    Stmt::SetMark {
                        of: MarkOf::Conn,
                        mark,
                        mask,
                    },
                ]],
            },
            ChainDef {
                name: "output".into(),
                kind: "route",
                hook: "output",
                prio: PRIO_MANGLE,
                rules: vec![vec![
                    Stmt::CtMarkIs { mark, mask },
                    Stmt::SetMark {
                        of: MarkOf::Packet,
                        mark,
                        mask,
                    },
                ]],
            },
        ],
        Vec::new(),
        vec!["prerouting".into(), "output".into()],
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

    /// Does a rule dump of the table show exactly this plan? `Err` says
    /// what differs. The dump cannot show chain hooks or set contents; the
    /// fingerprint in the comments stands for them (see the module docs).
    pub fn quick_check(&self, rules: &[DumpedRule]) -> Result<(), String> {
        for chain in &self.chains {
            let found: Vec<&DumpedRule> = rules.iter().filter(|r| r.chain == chain.name).collect();
            if found.is_empty() {
                return Err(format!("chain {} is missing or empty", chain.name));
            }
            if found.len() != chain.rules.len() {
                return Err(format!(
                    "chain {} has {} rule(s), expected {}",
                    chain.name,
                    found.len(),
                    chain.rules.len()
                ));
            }
            for (i, (got, want)) in found.iter().zip(&chain.rules).enumerate() {
                if got.comment.as_deref() != Some(self.comment.as_str()) {
                    return Err(format!(
                        "rule {} of chain {} is not the current one (comment {:?}, expected {:?})",
                        i + 1,
                        chain.name,
                        got.comment.as_deref().unwrap_or(""),
                        self.comment
                    ));
                }
                let refs: BTreeSet<String> = got
                    .exprs
                    .iter()
                    .filter(|e| e.name == "lookup")
                    .filter_map(|e| e.attrs().string(NFTA_LOOKUP_SET))
                    .filter(|name| !is_anonymous(name))
                    .collect();
                if refs != stmt_refs(want) {
                    return Err(format!(
                        "rule {} of chain {} uses sets {:?}",
                        i + 1,
                        chain.name,
                        refs
                    ));
                }
            }
        }
        let stale: Vec<&str> = self
            .stale_chains()
            .filter(|name| rules.iter().any(|r| r.chain == *name))
            .collect();
        if !stale.is_empty() {
            return Err(format!("stale chain(s) {}", stale.join(", ")));
        }
        Ok(())
    }

    fn stale_chains(&self) -> impl Iterator<Item = &str> {
        self.owned_chains
            .iter()
            .map(String::as_str)
            .filter(|name| !self.chains.iter().any(|c| c.name == *name))
    }

    fn stale_sets(&self) -> impl Iterator<Item = &str> {
        self.owned_sets
            .iter()
            .map(String::as_str)
            .filter(|name| !self.sets.iter().any(|s| s.name == *name))
    }

    /// One transaction that makes the plan real, whatever of it exists:
    /// the owner's chains are deleted and re-made (touched first, so the
    /// delete never fails on a chain that is not there), stale and constant
    /// sets are deleted and re-made, member sets are kept — with their
    /// elements — unless they have the wrong shape. `timeouts`: member sets
    /// get `flags timeout` (the kernel can update an element's timeout).
    pub fn transaction(&self, view: Option<&TableView>, timeouts: bool) -> Transaction {
        let mut changes = vec![Change::AddTable];
        // What the listing shows absent is created, not re-made: no delete
        // (whose commit leaves the kernel objects to free, and the socket's
        // close a grace period to wait for). Created exclusively: should it
        // have appeared since, the transaction fails (`EEXIST`) instead of
        // doubling rules, and the caller makes it without a view.
        let absent = |name: &str, sets: bool| {
            view.is_some_and(|v| {
                !if sets {
                    v.sets.contains_key(name)
                } else {
                    v.chains.contains_key(name)
                }
            })
        };
        for name in self.owned_chains.iter().filter(|c| !absent(c, false)) {
            changes.push(Change::TouchChain(name.clone()));
            changes.push(Change::FlushChain(name.clone()));
            changes.push(Change::DeleteChain(name.clone()));
        }
        // Member sets kept as they are: an `add` of today's shape would fail
        // on one of the earlier (flag-less) shape.
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        for name in &self.owned_sets {
            let existing = view.and_then(|v| v.sets.get(name));
            let Some(shape) = owned_set_shape(name) else {
                continue;
            };
            // Stale (another scope's, another spec's): goes, elements and all.
            if !self.sets.iter().any(|s| s.name == *name) {
                if existing.is_some() {
                    changes.push(Change::DeleteSet(name.clone()));
                } else if view.is_none() && shape.constant.is_some() {
                    // Unknown state: a constant set has one shape; make sure
                    // it goes. (A member set's shape may vary: it goes with
                    // the next repair planned from a listing, which `compare`
                    // asks for by reporting it stale.)
                    changes.push(Change::AddSet {
                        set: shape,
                        new: false,
                    });
                    changes.push(Change::DeleteSet(name.clone()));
                }
                continue;
            }
            let member = shape.constant.is_none();
            let fits = |e: &SetView| {
                e.key == key_type(shape.family)
                    && if member && !shape.subnets {
                        member_flags_fit(&e.flags)
                    } else {
                        e.flags == set_flags(&shape, timeouts)
                    }
            };
            match existing {
                // A member set of the right shape keeps its elements.
                Some(e) if member && fits(e) => {
                    kept.insert(name);
                }
                // Wrong shape: an `add` would fail on it; a plain delete.
                Some(e) if !fits(e) => changes.push(Change::DeleteSet(name.clone())),
                // Constant sets are re-made, as chains are: an empty one
                // added first, so the delete cannot fail on a set that is
                // not there (whatever the listing said).
                _ if !member && !absent(name, true) => {
                    changes.push(Change::AddSet {
                        set: shape,
                        new: false,
                    });
                    changes.push(Change::DeleteSet(name.clone()));
                }
                _ => {}
            }
        }
        for set in self.sets.iter().filter(|s| !kept.contains(s.name.as_str())) {
            changes.push(Change::AddSet {
                set: set.clone(),
                new: absent(&set.name, true),
            });
        }
        self.add_chains(&mut changes, |name| absent(name, false));
        self.transact(changes, timeouts)
    }

    /// The plan's chains and their rules; `new` says which are created.
    fn add_chains(&self, changes: &mut Vec<Change>, new: impl Fn(&str) -> bool) {
        for chain in &self.chains {
            changes.push(Change::AddChain {
                name: chain.name.clone(),
                kind: chain.kind,
                hook: chain.hook,
                prio: chain.prio,
                new: new(&chain.name),
            });
            for rule in &chain.rules {
                changes.push(Change::AddRule {
                    chain: chain.name.clone(),
                    rule: rule.clone(),
                });
            }
        }
    }

    /// The transaction that makes the plan in a table that does not exist
    /// (as a rule dump just said): nothing to delete, so its commit leaves
    /// the kernel nothing to free — and closing the socket nothing to wait
    /// for (see `messages::ElemOp::Expire`). It fails with `EEXIST` if the
    /// table appeared meanwhile; then [`Plan::transaction`] is the way.
    pub fn creation(&self, timeouts: bool) -> Transaction {
        let mut changes = vec![Change::CreateTable];
        changes.extend(self.sets.iter().map(|set| Change::AddSet {
            set: set.clone(),
            new: true,
        }));
        self.add_chains(&mut changes, |_| true);
        self.transact(changes, timeouts)
    }

    /// One transaction removing everything this owner made (any spec), or
    /// the whole table when nothing else is left in it; `None` when there
    /// is nothing to remove.
    pub fn removal(&self, view: &TableView) -> Option<Transaction> {
        let chains: Vec<&String> = self
            .owned_chains
            .iter()
            .filter(|c| view.chains.contains_key(*c))
            .collect();
        let sets: Vec<&String> = self
            .owned_sets
            .iter()
            .filter(|s| view.sets.contains_key(*s))
            .collect();
        if chains.is_empty() && sets.is_empty() {
            return None;
        }
        let others = view
            .chains
            .keys()
            .filter(|c| !self.owned_chains.contains(c))
            .count()
            + view
                .sets
                .keys()
                .filter(|s| !self.owned_sets.contains(s))
                .count();
        let changes = if others == 0 {
            vec![Change::DeleteTable]
        } else {
            let mut changes = Vec::new();
            for name in chains {
                changes.push(Change::FlushChain(name.clone()));
                changes.push(Change::DeleteChain(name.clone()));
            }
            for name in sets {
                changes.push(Change::DeleteSet(name.clone()));
            }
            changes
        };
        Some(self.transact(changes, false))
    }

    fn transact(&self, changes: Vec<Change>, timeouts: bool) -> Transaction {
        Transaction {
            table: self.table.clone(),
            comment: self.comment.clone(),
            timeouts,
            changes,
        }
    }

    /// The plan against a full listing of its table (`None`: no table).
    pub fn compare(&self, view: Option<&TableView>) -> Presence {
        let Some(view) = view else {
            return Presence::Missing;
        };
        let mut problems = Vec::new();
        let mut found_any = false;
        for set in &self.sets {
            let Some(got) = view.sets.get(&set.name) else {
                problems.push(format!("set {} is missing", set.name));
                continue;
            };
            found_any = true;
            if got.key != key_type(set.family) {
                problems.push(format!(
                    "set {} has type {}, expected {}",
                    set.name,
                    got.key,
                    key_type(set.family)
                ));
                continue;
            }
            if let Some(cidrs) = &set.constant {
                let want = ranges_of(cidrs);
                match &got.ranges {
                    Some(have) if *have == want => {}
                    _ => problems.push(format!("set {} does not hold {}", set.name, list(cidrs))),
                }
            }
        }
        for chain in &self.chains {
            let Some(got) = view.chains.get(&chain.name) else {
                problems.push(format!("chain {} is missing", chain.name));
                continue;
            };
            found_any = true;
            if got.kind.as_deref() != Some(chain.kind)
                || got.hook.as_deref() != Some(chain.hook)
                || got.prio != Some(chain.prio)
            {
                problems.push(format!(
                    "chain {} is not a {} chain at {} priority {}",
                    chain.name, chain.kind, chain.hook, chain.prio
                ));
            }
            let ours = got
                .rules
                .iter()
                .filter(|r| r.comment.as_deref() == Some(self.comment.as_str()))
                .count();
            if got.rules.len() != chain.rules.len() || ours != chain.rules.len() {
                problems.push(format!(
                    "chain {} has {} rule(s), {} of them current; expected {}",
                    chain.name,
                    got.rules.len(),
                    ours,
                    chain.rules.len()
                ));
                continue;
            }
            for (i, (rule, want)) in got.rules.iter().zip(&chain.rules).enumerate() {
                if rule.refs != stmt_refs(want) {
                    problems.push(format!(
                        "rule {} of chain {} uses sets {:?}",
                        i + 1,
                        chain.name,
                        rule.refs
                    ));
                }
            }
        }
        for name in self.stale_chains() {
            if view.chains.contains_key(name) {
                problems.push(format!("stale chain {name}"));
            }
        }
        for name in self.stale_sets() {
            if view.sets.contains_key(name) {
                problems.push(format!("stale set {name}"));
            }
        }
        if !found_any {
            Presence::Missing
        } else if problems.is_empty() {
            Presence::Present
        } else {
            Presence::Drifted(format!(
                "table {} {}: {}",
                FAMILY,
                self.table,
                problems.join("; ")
            ))
        }
    }
}

/// The shape (family, member or constant) a set of gwsteer's has, from its
/// name (`p_v4`, `p_to_v6`, `p_ex_v4`…), with no elements.
fn owned_set_shape(name: &str) -> Option<SetDef> {
    let family = match name.rsplit('_').next()? {
        "v4" => Family::V4,
        "v6" => Family::V6,
        _ => return None,
    };
    let constant = name.contains("_to_") || name.contains("_ex_");
    Some(SetDef {
        name: name.to_string(),
        family,
        constant: constant.then(Vec::new),
        subnets: name.contains("_net_"),
    })
}

fn is_anonymous(set: &str) -> bool {
    set.starts_with("__set")
}

/// The named sets a rule looks up.
fn stmt_refs(rule: &[Stmt]) -> BTreeSet<String> {
    rule.iter()
        .filter_map(Stmt::set_ref)
        .map(str::to_string)
        .collect()
}

/// A set's flags by nft's names. A member set has `flags timeout` where
/// the kernel can update an element's timeout (`timeouts`): a pod's element
/// then goes by expiring, not by a deleting transaction (see
/// `messages::ElemOp::Expire`).
pub fn set_flags(set: &SetDef, timeouts: bool) -> Vec<String> {
    match &set.constant {
        Some(_) => vec!["constant".into(), "interval".into()],
        None if set.subnets => vec!["interval".into()],
        None if timeouts => vec!["timeout".into()],
        None => Vec::new(),
    }
}

/// Flags a member set may have and keep its elements: none (made by a
/// version before expiring removal, or on a kernel without it) or
/// `timeout`. Either works: removal falls back to a delete without it.
fn member_flags_fit(flags: &[String]) -> bool {
    flags.is_empty() || flags == ["timeout"]
}

fn list(cidrs: &[IpNet]) -> String {
    if cidrs.is_empty() {
        return "nothing".into();
    }
    cidrs
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod render;
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mark_policy(egress: &[&str], exclude: &[&str], mask: u32) -> FwPolicy {
        FwPolicy {
            scope: FwScope::Pod,
            network: "net1".into(),
            policy: "egress".into(),
            mark: 0x1400,
            mask,
            marking: Marking::Mark {
                egress_to: egress.iter().map(|c| c.parse().unwrap()).collect(),
                exclude: exclude.iter().map(|c| c.parse().unwrap()).collect(),
            },
        }
    }

    #[test]
    fn mark_plan_names_and_rules() {
        let plan = policy_plan(&mark_policy(
            &["203.0.113.0/24"],
            &["203.0.113.7/32"],
            0xff00,
        ))
        .unwrap();
        assert_eq!(plan.table, "gwsteer-net1");
        let names: Vec<&str> = plan.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "egress_v4",
                "egress_v6",
                "egress_to_v4",
                "egress_ex_v4",
                "egress_to_v6"
            ]
        );
        assert_eq!(plan.chains.len(), 1);
        let v4 = &plan.chains[0].rules[0];
        assert_eq!(
            stmt_refs(v4),
            ["egress_v4", "egress_to_v4", "egress_ex_v4"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            v4.last().unwrap().to_json()["mangle"]["value"],
            json!({"|": [{"&": [{"meta": {"key": "mark"}}, 0xffff00ffu32]}, 0x1400]})
        );
        assert!(
            plan.comment.starts_with("gwsteer net1/egress #"),
            "{}",
            plan.comment
        );
    }

    #[test]
    fn fingerprint_follows_the_spec() {
        let a = policy_plan(&mark_policy(&[], &[], u32::MAX)).unwrap();
        let b = policy_plan(&mark_policy(&[], &[], u32::MAX)).unwrap();
        let c = policy_plan(&mark_policy(&["10.0.0.0/8"], &[], u32::MAX)).unwrap();
        assert_eq!(a.comment, b.comment);
        assert_ne!(a.comment, c.comment);
    }

    /// The nft JSON of sample plans, hashed. When this fails, the rendering
    /// changed: installed rules would still carry fingerprints that match,
    /// so bump RULESET_VERSION, then update PINNED.
    #[test]
    fn rendering_is_pinned() {
        const PINNED: u64 = 0x3d64_9e02_4c85_0ae5;
        let samples = [
            policy_plan(&mark_policy(
                &["203.0.113.0/24", "fd00::/8"],
                &["203.0.113.7/32"],
                0xff00,
            )),
            policy_plan(&mark_policy(&[], &[], u32::MAX)),
            policy_plan(&FwPolicy {
                scope: FwScope::Pod,
                network: "net1".into(),
                policy: "in".into(),
                mark: 0x2,
                mask: 0x2,
                marking: Marking::Connmark {
                    ingress: vec!["eth1".into(), "eth0".into()],
                },
            }),
            exemption_plan(&FwExemption {
                network: "net1".into(),
                cidrs: vec![
                    "10.20.0.0/24".parse().unwrap(),
                    "fd00:20::/64".parse().unwrap(),
                ],
                chains: Vec::new(),
            }),
        ];
        let mut h = fnv();
        for plan in samples {
            h.write(plan.unwrap().rendering().to_string().as_bytes());
        }
        let actual = h.finish();
        assert_eq!(
            actual, PINNED,
            "the nft rendering changed: bump RULESET_VERSION (now {RULESET_VERSION}), then set PINNED to {actual:#x}"
        );
    }

    /// Installed rules carry their plan's fingerprint: a change to how
    /// plans are hashed (not to what they hold) would re-make every
    /// policy's chains on upgrade. These are the fingerprints of version 3.
    #[test]
    fn fingerprints_of_unchanged_plans_stay() {
        let mark = policy_plan(&mark_policy(
            &["203.0.113.0/24"],
            &["203.0.113.7/32"],
            0xff00,
        ));
        let connmark = policy_plan(&FwPolicy {
            scope: FwScope::Pod,
            network: "net1".into(),
            policy: "in".into(),
            mark: 0x2,
            mask: 0x2,
            marking: Marking::Connmark {
                ingress: vec!["eth1".into()],
            },
        });
        assert_eq!(
            [mark.unwrap().comment, connmark.unwrap().comment],
            [
                "gwsteer net1/egress #8b19eceb468b2d6d",
                "gwsteer net1/in #7c1d0410007602fb"
            ]
        );
    }

    #[test]
    fn long_names_keep_comments_short() {
        let mut p = mark_policy(&[], &[], u32::MAX);
        p.network = "n".repeat(200);
        let plan = policy_plan(&p).unwrap();
        assert_eq!(plan.comment.len(), MAX_COMMENT, "{}", plan.comment);
        assert!(plan.comment.starts_with("gwsteer nnn"), "{}", plan.comment);
        let short = policy_plan(&mark_policy(&[], &[], u32::MAX)).unwrap();
        assert!(short.comment.len() < MAX_COMMENT);
    }

    #[test]
    fn bad_specs_are_config_errors() {
        let mut p = mark_policy(&[], &[], 0xff);
        assert_eq!(
            policy_plan(&p).unwrap_err().code,
            crate::error::code::INVALID_CONFIG
        );
        p.mask = u32::MAX;
        p.network = "a b".into();
        assert!(policy_plan(&p).is_err());
    }
}
