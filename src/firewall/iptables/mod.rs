//! The iptables backend, for hosts without nftables: the `mark` and
//! `connmark` policies as rules in the mangle table that match ipsets of
//! member pods, and the masquerade exemption as an identity mapping at the
//! top of nat POSTROUTING.
//!
//! # What it makes
//!
//! Names derive from a stable 8-hex-digit hash `<h>` of network and policy.
//! Every rule carries `-m comment --comment gwsteer:<network>/<policy>`
//! (exemptions: `gwsteer:<network>`), every chain is named `GWS-…`, every
//! set `gws-…`: that is how DEL, reconcile and `cleanup` know gwsteer's own.
//!
//! A `mark` policy (per family; `ip6tables` for IPv6), with `egressTo` and
//! `exclude`:
//!
//! ```text
//! -A PREROUTING -m set --match-set gws-<h>-4 src -m comment --comment gwsteer:net/egress
//!     -j GWS-<h>                                                              (first)
//! -A GWS-<h> -m set --match-set gws-<h>-4 src -m set --match-set gws-<h>-to4 dst
//!     -m set ! --match-set gws-<h>-ex4 dst -m comment --comment gwsteer:net/egress
//!     -j MARK --set-xmark 0x100/0xff00
//! ```
//!
//! A `connmark` policy marks new connections in mangle FORWARD, because the
//! DNAT that puts the pod's address into a service connection happens in nat
//! PREROUTING, after mangle PREROUTING; the pod's replies get the mark back
//! in mangle PREROUTING, before their routing decision:
//!
//! ```text
//! -A FORWARD -m set --match-set gws-<h>-4 dst -m comment --comment gwsteer:net/ret
//!     -j GWS-<h>-FWD                                                          (first)
//! -A GWS-<h>-FWD -i eth1 -m conntrack --ctstate NEW -m set --match-set gws-<h>-4 dst
//!     -m comment --comment gwsteer:net/ret -j CONNMARK --set-xmark 0x14/0xffffffff
//! -A PREROUTING -m set --match-set gws-<h>-4 src -m comment --comment gwsteer:net/ret
//!     -j GWS-<h>                                                              (first)
//! -A GWS-<h> -m set --match-set gws-<h>-4 src -m conntrack --ctdir REPLY
//!     -m connmark --mark 0x14 -m comment --comment gwsteer:net/ret
//!     -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
//! ```
//!
//! Pod-initiated connections never carry the connection mark, so they are
//! never steered. The jumps match the member set too: other packets never
//! enter the chains, and every rule of a policy references its member set,
//! which the fast path below relies on.
//!
//! A masquerade exemption, in nat POSTROUTING of *both* iptables variants
//! (when the kernel has the other one), ahead of every rule that is not
//! gwsteer's:
//!
//! ```text
//! -A POSTROUTING -s 10.50.0.0/24 -m set --match-set gws-<h>-x4 src
//!     -m comment --comment gwsteer:gw -j NETMAP --to 10.50.0.0/24
//! -A KIND-MASQ-AGENT -s 10.50.0.0/24 -m set --match-set gws-<h>-x4 src
//!     -m comment --comment gwsteer:gw -j RETURN                               (first)
//! ```
//!
//! `NETMAP` onto the same prefix maps every address to itself. What makes it
//! an exemption is how the kernel runs nat chains: for a new connection, the
//! nat base chains of a hook (iptables-legacy's, iptables-nft's, nftables')
//! are consulted in priority order only until one of them sets up a mapping;
//! the identity mapping is one, so no later masquerade applies. Within one
//! variant, first place in POSTROUTING beats every rule behind it, whenever
//! that rule was added; across variants, the chain registered last runs
//! first among chains of equal priority, which is why the exemption goes into
//! both variants (then each variant's masquerade sits behind it). An nftables
//! nat chain at priority ≤ 100 (`srcnat`) that is created *after* gwsteer's
//! runs first and wins: iptables cannot make a chain of earlier priority.
//! Such a host has nftables, and the nftables backend, which can place its
//! chain before `srcnat`, is the one to use there (`firewallBackend: auto`
//! picks it). The `RETURN`s in the named foreign chains are a second line,
//! for when a rule gets inserted ahead of the identity mapping.
//!
//! # Which iptables
//!
//! `GWSTEER_IPTABLES=legacy` or `=nft` in the plugin's environment selects
//! `iptables-legacy*` or `iptables-nft*`; unset, the system's `iptables-save`
//! / `iptables-restore` (and `ip6tables-*`), whichever variant the
//! distribution's alternative points at. Rules change only through
//! `*-restore --noflush` transactions (one per family and table, at most),
//! fed on stdin; tables are read with `*-save`.
//!
//! # Cost
//!
//! Sets are driven over the ipset netlink protocol (no `ipset` binary): a
//! pod's membership is one request of a few dozen bytes. `ensure` of a
//! policy or exemption that is in place runs no process either: per family,
//! one netlink read of a set's header shows that the set exists and how many
//! iptables rules reference it (a policy's member set: every rule of the
//! policy; an exemption's witness set: its identity mappings in each variant
//! the kernel has). Only gwsteer's rules reference gwsteer's sets, so a rule
//! deleted or a chain flushed by hand shows as a missing reference. Anything
//! else (first pod, drift, an object `observe` found wanting, `remove`,
//! `cleanup`) reads the table with `*-save` and applies at most one
//! `*-restore` per family and table.

mod diff;
mod ipset;
mod rules;
mod xtables;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use ipnet::IpNet;

use super::nfnl::NlError;
use super::{Firewall, FwExemption, FwMember, FwObject, FwPolicy};
use crate::error::{Error, Result, code};
use crate::objects::{Family, Presence};
use ipset::{HASH_NET, Ipset, SetInfo};
use rules::{ExemptionSpec, MANGLE, NAT, POSTROUTING, PolicyNames, SET_PREFIX, SetSpec};
use xtables::{Table, Tools};

pub use crate::firewall::xtables::Variant;
use crate::firewall::xtables::legacy_tables;

/// The environment variable that selects the iptables variant.
pub const VARIANT_ENV: &str = "GWSTEER_IPTABLES";

/// IPv4, and IPv6 unless the kernel runs without it (`ipv6.disable=1`):
/// then there is no ip6tables to write to, and no pod has an IPv6 address.
fn families() -> Vec<Family> {
    let mut f = vec![Family::V4];
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        f.push(Family::V6);
    }
    f
}

/// Built-in chains are never "foreign chains" that get a `RETURN`.
const BUILTIN_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

pub struct Iptables {
    primary: Tools,
    /// The other variant's tools, when installed: for exemptions and cleanup.
    other: Option<Tools>,
    ipset: Ipset,
    /// Does the kernel answer nf_tables? Asked once, when first needed.
    nft_answers: Option<bool>,
    /// iptables tools run so far (tests prove the fast paths run none).
    execs: Cell<u32>,
    /// Objects `observe` found not in place: their next `ensure` does the
    /// full comparison even if the fast path would pass (reconcile repairs
    /// what CHECK reports, with one backend).
    suspect: HashSet<FwObject>,
}

fn unavailable(msg: impl Into<String>) -> Error {
    Error::new(code::NOT_AVAILABLE, msg)
}

fn fw_error(what: impl fmt::Display, msg: impl fmt::Display) -> Error {
    Error::new(code::FIREWALL, format!("{what}: {msg}"))
}

fn set_error(set: &str, doing: &str, e: &NlError) -> Error {
    fw_error(format!("{doing} ipset {set}"), ipset::describe(e))
}

fn host(net: &IpNet) -> IpNet {
    IpNet::new(net.addr(), net.max_prefix_len()).unwrap_or(*net)
}

/// `hash:ip inet6`: a set's type and family as ipset names them.
fn shape(info: &SetInfo) -> String {
    match info.family {
        Some(f) => format!("{} {f}", info.typename),
        None => format!("{} (other family)", info.typename),
    }
}

fn presence(problems: Vec<String>, any: bool) -> Presence {
    if problems.is_empty() {
        Presence::Present
    } else if !any {
        Presence::Missing
    } else {
        Presence::Drifted(problems.join("; "))
    }
}

/// The variant a [`VARIANT_ENV`] value names; unset or empty: the system's.
fn variant_from_env(value: Option<&str>) -> Result<Option<Variant>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some("legacy") => Ok(Some(Variant::Legacy)),
        Some("nft") => Ok(Some(Variant::Nft)),
        Some(other) => Err(Error::new(
            code::INVALID_ENV,
            format!("{VARIANT_ENV}={other:?}: expected \"legacy\" or \"nft\""),
        )),
    }
}

/// Is legacy iptables loaded in this namespace, or loadable?
fn legacy_available() -> bool {
    if legacy_tables(Family::V4).is_some() {
        return true;
    }
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    ["modules.dep", "modules.builtin"].iter().any(|f| {
        std::fs::read_to_string(format!("/lib/modules/{}/{f}", release.trim()))
            .is_ok_and(|s| s.contains("/ip_tables.ko"))
    })
}

impl Iptables {
    /// The backend with the variant [`VARIANT_ENV`] names, else the
    /// system's. Fails with code 50 when the tools, the kernel's iptables
    /// variant or its ipset support are missing. Cheap: no process is run.
    pub fn new() -> Result<Iptables> {
        let value = std::env::var(VARIANT_ENV).ok();
        Iptables::with_variant(variant_from_env(value.as_deref())?)
    }

    /// The backend with an explicit variant (`None`: the system's).
    pub fn with_variant(variant: Option<Variant>) -> Result<Iptables> {
        let primary = match variant {
            None => Tools::system(),
            Some(v) => Tools::explicit(v),
        }
        .map_err(|missing| {
            unavailable(format!(
                "iptables backend: {missing} not found (install the iptables package)"
            ))
        })?;
        let ipset = Ipset::open().map_err(|e| {
            unavailable(format!(
                "iptables backend: the kernel's ipset does not answer (CONFIG_IP_SET): {}",
                ipset::describe(&e)
            ))
        })?;
        let mut fw = Iptables {
            other: Tools::explicit(primary.variant.other()).ok(),
            primary,
            ipset,
            nft_answers: None,
            execs: Cell::new(0),
            suspect: HashSet::new(),
        };
        let usable = match fw.primary.variant {
            Variant::Legacy => legacy_available(),
            Variant::Nft => fw.nft_usable(),
        };
        if !usable {
            return Err(unavailable(format!(
                "iptables backend: {} has no kernel support here ({})",
                fw.primary.label(Family::V4),
                match fw.primary.variant {
                    Variant::Legacy => "no ip_tables module",
                    Variant::Nft => "nf_tables does not answer",
                }
            )));
        }
        Ok(fw)
    }

    fn nft_usable(&mut self) -> bool {
        let ipset = &mut self.ipset;
        *self
            .nft_answers
            .get_or_insert_with(|| ipset.nftables_answers())
    }

    /// `tools` can be used in this namespace for `family`.
    fn usable(&mut self, tools: &Tools, family: Family) -> bool {
        match tools.variant {
            Variant::Legacy => legacy_tables(family).is_some(),
            Variant::Nft => self.nft_usable(),
        }
    }

    /// Ours, and the other variant's when the kernel has it.
    fn all_tools(&mut self, family: Family) -> Vec<Tools> {
        let mut tools = vec![self.primary.clone()];
        if let Some(other) = self.other.clone()
            && self.usable(&other, family)
        {
            tools.push(other);
        }
        tools
    }

    fn save(&self, tools: &Tools, family: Family, table: &str) -> Result<Table> {
        self.execs.set(self.execs.get() + 1);
        tools
            .save(family, table)
            .map_err(|e| fw_error(format!("reading {} {table}", tools.label(family)), e))
    }

    fn restore(&self, tools: &Tools, family: Family, table: &str, lines: &[String]) -> Result<()> {
        self.execs.set(self.execs.get() + 1);
        let script = diff::script(table, lines);
        log::debug!("{} restore:\n{script}", tools.label(family));
        tools.restore(family, &script).map_err(|e| {
            fw_error(format!("changing {} {table}", tools.label(family)), e)
                .with_details(script.trim_end().replace('\n', " | "))
        })
    }

    /// Reads `table` and applies the lines `change` wants for it, if any:
    /// one `*-save`, at most one `*-restore`.
    fn rewrite(
        &self,
        tools: &Tools,
        family: Family,
        table: &str,
        change: impl FnOnce(&Table) -> Vec<String>,
    ) -> Result<()> {
        let lines = change(&self.save(tools, family, table)?);
        if lines.is_empty() {
            return Ok(());
        }
        self.restore(tools, family, table, &lines)
    }

    // ---- sets ----

    fn set_info(&mut self, name: &str) -> Result<Option<SetInfo>> {
        self.ipset
            .info(name)
            .map_err(|e| set_error(name, "reading", &e))
    }

    /// The members of a set; none if there is no such set.
    fn set_members(&mut self, name: &str) -> Result<Vec<IpNet>> {
        Ok(self
            .ipset
            .members(name)
            .map_err(|e| set_error(name, "listing", &e))?
            .unwrap_or_default())
    }

    /// The set exists with gwsteer's type and family, and holds exactly
    /// `contents` when given (added before stale ones go, so that an
    /// exclusion never lapses).
    fn ensure_set(&mut self, spec: &SetSpec) -> Result<()> {
        match self.set_info(&spec.name)? {
            None => self
                .ipset
                .create(&spec.name, spec.family)
                .map_err(|e| set_error(&spec.name, "creating", &e))?,
            Some(info) if info.typename == HASH_NET && info.family == Some(spec.family) => {}
            Some(info) => {
                return Err(fw_error(
                    format!("ipset {}", spec.name),
                    format!("exists as {}, not {HASH_NET} {}", shape(&info), spec.family),
                ));
            }
        }
        if let Some(want) = &spec.contents {
            let have = self.set_members(&spec.name)?;
            for net in want.iter().filter(|n| !have.contains(n)) {
                self.ipset
                    .add(&spec.name, net)
                    .map_err(|e| set_error(&spec.name, &format!("adding {net} to"), &e))?;
            }
            for net in have.iter().filter(|n| !want.contains(n)) {
                self.ipset
                    .del(&spec.name, net)
                    .map_err(|e| set_error(&spec.name, &format!("deleting {net} from"), &e))?;
            }
        }
        Ok(())
    }

    fn destroy_set(&mut self, name: &str) -> Result<()> {
        self.ipset
            .destroy(name)
            .map(|_| ())
            .map_err(|e| set_error(name, "destroying", &e))
    }

    fn set_problems(
        &mut self,
        spec: &SetSpec,
        problems: &mut Vec<String>,
        any: &mut bool,
    ) -> Result<()> {
        let Some(info) = self.set_info(&spec.name)? else {
            problems.push(format!("ipset {} missing", spec.name));
            return Ok(());
        };
        *any = true;
        if info.typename != HASH_NET || info.family != Some(spec.family) {
            problems.push(format!("ipset {} is {}", spec.name, shape(&info)));
            return Ok(());
        }
        if let Some(want) = &spec.contents {
            let have = self.set_members(&spec.name)?;
            let lacks: Vec<String> = want
                .iter()
                .filter(|n| !have.contains(n))
                .map(|n| n.to_string())
                .collect();
            let extra: Vec<String> = have
                .iter()
                .filter(|n| !want.contains(n))
                .map(|n| n.to_string())
                .collect();
            if !lacks.is_empty() {
                problems.push(format!("ipset {} lacks {}", spec.name, lacks.join(", ")));
            }
            if !extra.is_empty() {
                problems.push(format!(
                    "ipset {} has unexpected {}",
                    spec.name,
                    extra.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Is a set there, of gwsteer's shape, referenced by at least `refs`
    /// rules? One netlink request.
    fn referenced(&mut self, name: &str, family: Family, refs: u32) -> Result<bool> {
        Ok(self.set_info(name)?.is_some_and(|i| {
            i.typename == HASH_NET && i.family == Some(family) && i.references >= refs
        }))
    }

    // ---- policies ----

    /// The fast path: both member sets exist and are referenced by as many
    /// rules as the policy has (rules that reference a set cannot outlive
    /// it, and only gwsteer's rules reference gwsteer's sets).
    fn policy_in_place(&mut self, p: &FwPolicy, names: &PolicyNames) -> Result<bool> {
        let refs = rules::member_set_references(p);
        for family in families() {
            if !self.referenced(&names.member_set(family), family, refs)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn ensure_policy(&mut self, p: &FwPolicy, fast: bool) -> Result<()> {
        let names = PolicyNames::new(&p.network, &p.policy);
        if fast && self.policy_in_place(p, &names)? {
            return Ok(());
        }
        let tools = self.primary.clone();
        for family in families() {
            let want = rules::policy_family(p, &names, family);
            for set in &want.sets {
                self.ensure_set(set)?;
            }
            self.rewrite(&tools, family, MANGLE, |table| {
                diff::policy_changes(table, &want, &names)
            })?;
            for stale in [names.to_set(family), names.ex_set(family)] {
                if !want.sets.iter().any(|s| s.name == stale) {
                    self.destroy_set(&stale)?;
                }
            }
        }
        Ok(())
    }

    /// Rules and chains go from both variants (the variant may have been
    /// switched since they were made); sets after them. A member set that
    /// still has members stays: its members are other objects, still
    /// recorded, and a policy re-made with changed settings (remove, then
    /// ensure) finds them in place.
    fn remove_policy(&mut self, p: &FwPolicy) -> Result<()> {
        let names = PolicyNames::new(&p.network, &p.policy);
        let mut errors = Vec::new();
        for family in families() {
            for tools in self.all_tools(family) {
                let result = self.rewrite(&tools, family, MANGLE, |table| {
                    diff::policy_removal(table, &names)
                });
                if let Err(e) = result {
                    errors.push(e);
                }
            }
        }
        if !errors.is_empty() {
            return Err(joined(errors));
        }
        for family in families() {
            for set in [names.to_set(family), names.ex_set(family)] {
                if let Err(e) = self.destroy_set(&set) {
                    errors.push(e);
                }
            }
            let member = names.member_set(family);
            match self.set_info(&member) {
                Ok(Some(info)) if info.elements > 0 => log::info!(
                    "keeping ipset {member}: it still has {} member(s) recorded elsewhere",
                    info.elements
                ),
                Ok(Some(_)) => {
                    if let Err(e) = self.destroy_set(&member) {
                        errors.push(e);
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        all_ok(errors)
    }

    fn observe_policy(&mut self, p: &FwPolicy) -> Result<Presence> {
        let names = PolicyNames::new(&p.network, &p.policy);
        let tools = self.primary.clone();
        let mut problems = Vec::new();
        let mut any = false;
        for family in families() {
            let want = rules::policy_family(p, &names, family);
            for set in &want.sets {
                self.set_problems(set, &mut problems, &mut any)?;
            }
            let table = self.save(&tools, family, MANGLE)?;
            let label = format!("{} {MANGLE}", tools.label(family));
            let (p, a) = diff::policy_problems(&table, &want, &names, &label);
            problems.extend(p);
            any |= a;
        }
        Ok(presence(problems, any))
    }

    // ---- members ----

    fn member_set(m: &FwMember) -> String {
        PolicyNames::new(&m.network, &m.policy).member_set(Family::of_net(&m.addr))
    }

    fn ensure_member(&mut self, m: &FwMember) -> Result<()> {
        let set = Self::member_set(m);
        let addr = host(&m.addr);
        self.ipset.add(&set, &addr).map_err(|e| match e {
            e if e.is_enoent() => fw_error(
                format!("adding {} to ipset {set}", addr.addr()),
                format!(
                    "no such set: policy {}/{} is not in place",
                    m.network, m.policy
                ),
            ),
            e => set_error(&set, &format!("adding {} to", addr.addr()), &e),
        })
    }

    fn remove_member(&mut self, m: &FwMember) -> Result<()> {
        let set = Self::member_set(m);
        let addr = host(&m.addr);
        match self.ipset.del(&set, &addr) {
            Ok(()) => Ok(()),
            Err(e) if e.is_enoent() => Ok(()),
            Err(e) => Err(set_error(
                &set,
                &format!("deleting {} from", addr.addr()),
                &e,
            )),
        }
    }

    fn observe_member(&mut self, m: &FwMember) -> Result<Presence> {
        let set = Self::member_set(m);
        match self.ipset.test(&set, &host(&m.addr)) {
            Ok(true) => Ok(Presence::Present),
            Ok(false) => Ok(Presence::Missing),
            Err(e) if e.is_enoent() => Ok(Presence::Missing),
            Err(e) => Err(set_error(&set, "testing a member of", &e)),
        }
    }

    // ---- exemptions ----

    /// The chains of `table` an exemption puts rules at the top of, with
    /// those rules: POSTROUTING its identity mappings, each foreign chain
    /// that exists its `RETURN`s.
    fn exemption_chains<'a>(
        spec: &'a ExemptionSpec,
        table: &'a Table,
        family: Family,
    ) -> impl Iterator<Item = (&'a str, Vec<Vec<String>>)> + 'a {
        let foreign = spec
            .chains
            .iter()
            .filter(|c| !BUILTIN_CHAINS.contains(&c.as_str()))
            .filter(|c| table.has_chain(c))
            .map(move |c| (c.as_str(), spec.return_rules(family)));
        std::iter::once((POSTROUTING, spec.netmap_rules(family))).chain(foreign)
    }

    /// The fast path: each family's witness set is referenced by at least
    /// the identity mappings of every variant the kernel has. (The `RETURN`s
    /// in foreign chains are not counted: whether those chains exist is only
    /// known by reading the table. `observe` checks them.)
    fn exemption_in_place(&mut self, spec: &ExemptionSpec) -> Result<bool> {
        for family in spec.families(&families()) {
            let variants = self.all_tools(family).len() as u32;
            let refs = spec.cidrs(family).len() as u32 * variants;
            if !self.referenced(&spec.witness(family).name, family, refs)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn ensure_exemption(&mut self, e: &FwExemption, fast: bool) -> Result<()> {
        let spec = ExemptionSpec::new(e);
        if fast && self.exemption_in_place(&spec)? {
            return Ok(());
        }
        for family in spec.families(&families()) {
            self.ensure_set(&spec.witness(family))?;
            for tools in self.all_tools(family) {
                let result = self.rewrite(&tools, family, NAT, |table| {
                    Self::exemption_chains(&spec, table, family)
                        .flat_map(|(chain, rules)| diff::first_rules_changes(table, chain, &rules))
                        .collect()
                });
                match result {
                    Err(err) if tools.variant != self.primary.variant => log::warn!(
                        "masquerade exemption {}: {} left out: {err}",
                        e.network,
                        tools.label(family)
                    ),
                    other => other?,
                }
            }
        }
        Ok(())
    }

    fn remove_exemption(&mut self, e: &FwExemption) -> Result<()> {
        let spec = ExemptionSpec::new(e);
        let mut errors = Vec::new();
        for family in spec.families(&families()) {
            let witness = spec.witness(family).name;
            for tools in self.all_tools(family) {
                let result = self.rewrite(&tools, family, NAT, |table| {
                    diff::removal(table, |r| {
                        r.comment() == Some(spec.comment.as_str()) && r.args.contains(&witness)
                    })
                });
                if let Err(err) = result {
                    errors.push(err);
                }
            }
            if errors.is_empty()
                && let Err(err) = self.destroy_set(&witness)
            {
                errors.push(err);
            }
        }
        all_ok(errors)
    }

    fn observe_exemption(&mut self, e: &FwExemption) -> Result<Presence> {
        let spec = ExemptionSpec::new(e);
        let mut problems = Vec::new();
        let mut any = false;
        for family in spec.families(&families()) {
            self.set_problems(&spec.witness(family), &mut problems, &mut any)?;
            for tools in self.all_tools(family) {
                let table = self.save(&tools, family, NAT)?;
                let label = format!("{} {NAT}", tools.label(family));
                for (chain, rules) in Self::exemption_chains(&spec, &table, family) {
                    let (p, a) = diff::first_rules_problems(&table, chain, &rules, &label);
                    problems.extend(p);
                    any |= a;
                }
            }
        }
        Ok(presence(problems, any))
    }
}

/// `Ok` when there are no errors, else all of them as one.
fn all_ok(errors: Vec<Error>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(joined(errors))
    }
}

/// Several errors as one: the first one's code, every message.
fn joined(errors: Vec<Error>) -> Error {
    let code = errors.first().map(|e| e.code).unwrap_or(code::FIREWALL);
    let msg: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    Error::new(code, msg.join("; "))
}

impl Firewall for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn ensure(&mut self, obj: &FwObject) -> Result<()> {
        let fast = !self.suspect.contains(obj);
        match obj {
            FwObject::Policy(p) => self.ensure_policy(p, fast),
            FwObject::Member(m) => self.ensure_member(m),
            FwObject::Exemption(e) => self.ensure_exemption(e, fast),
        }
        .map_err(|e| e.context(obj))?;
        self.suspect.remove(obj);
        Ok(())
    }

    fn remove(&mut self, obj: &FwObject) -> Result<()> {
        match obj {
            FwObject::Policy(p) => self.remove_policy(p),
            FwObject::Member(m) => self.remove_member(m),
            FwObject::Exemption(e) => self.remove_exemption(e),
        }
        .map_err(|e| e.context(obj))
    }

    fn observe(&mut self, obj: &FwObject) -> Result<Presence> {
        let presence = match obj {
            FwObject::Policy(p) => self.observe_policy(p),
            FwObject::Member(m) => self.observe_member(m),
            FwObject::Exemption(e) => self.observe_exemption(e),
        }
        .map_err(|e| e.context(obj))?;
        if presence != Presence::Present {
            self.suspect.insert(obj.clone());
        }
        Ok(presence)
    }

    /// Every gwsteer rule (comment `gwsteer:…`, or a jump to a `GWS-…`
    /// chain) and chain in mangle and nat of iptables and ip6tables, in both
    /// variants (legacy tables that do not exist are not created by looking),
    /// then every `gws-…` ipset. Goes on after errors and reports them all.
    fn cleanup(&mut self, dry_run: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for family in families() {
            for tools in self.all_tools(family) {
                for table_name in [MANGLE, NAT] {
                    let table = match self.save(&tools, family, table_name) {
                        Ok(t) => t,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    let (lines, what) = diff::cleanup(&table);
                    if lines.is_empty() {
                        continue;
                    }
                    let label = tools.label(family);
                    removed.extend(what.iter().map(|w| format!("{label} {table_name}: {w}")));
                    if !dry_run && let Err(e) = self.restore(&tools, family, table_name, &lines) {
                        errors.push(e);
                    }
                }
            }
        }
        match self.ipset.names() {
            Ok(names) => {
                for name in names.iter().filter(|n| n.starts_with(SET_PREFIX)) {
                    removed.push(format!("ipset {name}"));
                    if !dry_run && let Err(e) = self.destroy_set(name) {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(set_error("*", "listing", &e)),
        }
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(joined(errors).context("iptables cleanup"))
        }
    }
}
