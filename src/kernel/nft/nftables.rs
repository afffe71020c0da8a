//! The nftables backend: gwsteer's own `inet` table per network,
//! `gwsteer-<network>`, holding each steering policy's member sets, chains
//! and rules and the network's masquerade exemption.
//!
//! Three speeds, none of which runs `nft`:
//! - a pod's membership (the hot path) is one nf_tables netlink batch
//!   adding one set element or letting it expire, and one
//!   `NFT_MSG_GETSETELEM` to read it back;
//! - `ensure` of a node-level object (called on every pod ADD, to repair
//!   drift) is one netlink rule dump of the network's table, compared with
//!   the fingerprinted comments the plan's rules carry ([`ruleset`]). An
//!   exemption's RETURN rules in foreign iptables chains are read without
//!   exec too ([`xtables`]);
//! - making, repairing and removing node-level objects is one nf_tables
//!   batch per change, all or nothing ([`batch`]: the messages nft would
//!   send), after reading what the table holds by netlink dumps ([`view`]);
//!   `observe` reads the same way.
//!
//! Only the exemption's RETURN rules in foreign iptables chains run a
//! command (`iptables`), and only when one is missing.
//!
//! The netlink socket is opened in [`Nftables::new`] on the calling thread,
//! so it (and every `iptables` child) works in the namespace that thread is
//! in.

#[cfg(test)]
mod testlab;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use ipnet::IpNet;
use std::path::PathBuf;

use super::Firewall;
use super::foreign::{ChainState, ReturnRule, Tool, Xtables};
use super::messages::{ElemOp, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NfError, NfSocket};
use super::ruleset::{
    FAMILY, Plan, TABLE_PREFIX, TableView, Transaction, element_set, exemption_plan,
    pod_connmark_plan, policy_plan, table_name,
};
use crate::error::{Error, Result, code};
use crate::model::{Family, FwExemption, FwMember, FwObject, MemberSet, Presence};

/// The nftables firewall backend.
pub struct Nftables {
    nl: NfSocket,
    xt: Xtables,
    /// How many ruleset batches were committed: the hot paths commit none.
    batches: usize,
}

impl Nftables {
    /// A backend for the network namespace of the calling thread. Fails
    /// with `NOT_AVAILABLE` when the kernel's nf_tables does not answer (no
    /// module, no permission).
    pub fn new() -> Result<Nftables> {
        let nl = NfSocket::open().map_err(|e| {
            let err = Error::new(
                code::NOT_AVAILABLE,
                format!("nftables backend: the kernel's nf_tables does not answer: {e}"),
            );
            match e.errno() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    err.with_details("gwsteer needs CAP_NET_ADMIN")
                }
                Some(libc::EPROTONOSUPPORT) | Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
                    err.with_details("is the nf_tables module available?")
                }
                _ => err,
            }
        })?;
        Ok(Nftables {
            nl,
            xt: Xtables::default(),
            batches: 0,
        })
    }

    // ---- node-level objects: policies and the exemption's nft part ----

    /// Makes the plan real unless one rule dump shows it intact.
    fn ensure_plan(&mut self, plan: &Plan) -> Result<()> {
        let rules = self.table_rules(&plan.table).map_err(|e| {
            fw_error(format!(
                "reading {} (table {FAMILY} {}): {e}",
                plan.what, plan.table
            ))
        })?;
        let why = match &rules {
            None => String::new(),
            Some(rules) => match plan.quick_check(rules) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            },
        };
        let timeouts = crate::kernel::probe::element_timeout_updates();
        // A rule dump of a missing table is empty (or ENOENT): is it there?
        let missing = match &rules {
            None => true,
            Some(rules) if rules.is_empty() => !self
                .nl
                .table_exists(NFPROTO_INET, &plan.table)
                .map_err(|e| fw_error(format!("looking for table {FAMILY} {}: {e}", plan.table)))?,
            Some(_) => false,
        };
        if missing {
            log::info!(
                "{}: table {FAMILY} {} is missing; creating it",
                plan.what,
                plan.table
            );
        } else {
            log::info!("{}: {why}; (re)making it", plan.what);
        }
        let tx = if missing {
            plan.creation(timeouts)
        } else {
            // The table is there (it has rules, or was just looked up), and
            // its rules were just dumped.
            let view = self.view_of(&plan.table, false, rules)?;
            plan.transaction(view.as_ref(), timeouts)
        };
        match self.commit_batch(&tx) {
            // Made meanwhile, by someone else: re-made whatever is there.
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                log::info!(
                    "{}: part of it appeared in table {FAMILY} {} meanwhile; re-making all of it",
                    plan.what,
                    plan.table
                );
                self.commit(&plan.transaction(None, timeouts))
            }
            done => done.map_err(|e| self.refused(&plan.table, e)),
        }
        .map_err(|e| e.context(format_args!("making {}", plan.what)))
    }

    fn remove_plan(&mut self, plan: &Plan) -> Result<()> {
        let Some(view) = self.read_table(&plan.table, false)? else {
            return Ok(());
        };
        match plan.removal(&view) {
            Some(tx) => self
                .commit(&tx)
                .map_err(|e| e.context(format_args!("removing {}", plan.what))),
            None => Ok(()),
        }
    }

    fn observe_plan(&mut self, plan: &Plan) -> Result<Presence> {
        let view = self.read_table(&plan.table, true)?;
        Ok(plan.compare(view.as_ref()))
    }

    /// The rules of one of gwsteer's tables (one netlink dump); `None` when
    /// the table does not exist.
    fn table_rules(
        &mut self,
        table: &str,
    ) -> Result<Option<Vec<super::messages::DumpedRule>>, NfError> {
        match self.nl.rules(NFPROTO_INET, table, None) {
            Ok(rules) => Ok(Some(rules)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One of gwsteer's tables as the kernel holds it (chain, set and rule
    /// dumps; with `elements`, the constant sets' elements too); `None` when
    /// there is none.
    fn read_table(&mut self, table: &str, elements: bool) -> Result<Option<TableView>> {
        let exists = self
            .nl
            .table_exists(NFPROTO_INET, table)
            .map_err(|e| fw_error(format!("looking for table {FAMILY} {table}: {e}")))?;
        if !exists {
            return Ok(None);
        }
        self.view_of(table, elements, None)
    }

    /// The view of a table known to exist; `rules`, when the caller has
    /// just dumped them, are not dumped again. `None` if it went meanwhile.
    fn view_of(
        &mut self,
        table: &str,
        elements: bool,
        rules: Option<Vec<super::messages::DumpedRule>>,
    ) -> Result<Option<TableView>> {
        let read = |nl: &mut NfSocket| -> Result<TableView, NfError> {
            let chains = nl.chains(NFPROTO_INET, table)?;
            let sets = nl.sets(NFPROTO_INET, table)?;
            let rules = match rules {
                Some(rules) => rules,
                None => nl.rules(NFPROTO_INET, table, None)?,
            };
            let mut failed = None;
            let view = TableView::of(chains, sets, rules, |set| {
                if !elements || failed.is_some() {
                    return None;
                }
                nl.elements(NFPROTO_INET, table, set)
                    .map_err(|e| failed = Some(e))
                    .ok()
            });
            match failed {
                Some(e) => Err(e),
                None => Ok(view),
            }
        };
        match read(&mut self.nl) {
            Ok(view) => Ok(Some(view)),
            // Deleted between the two looks.
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(fw_error(format!("reading table {FAMILY} {table}: {e}"))),
        }
    }

    /// Commits one transaction as one nf_tables netlink batch: all of it or
    /// nothing.
    fn commit(&mut self, tx: &Transaction) -> Result<()> {
        self.commit_batch(tx)
            .map_err(|e| self.refused(&tx.table, e))
    }

    fn commit_batch(&mut self, tx: &Transaction) -> Result<(), NfError> {
        log::debug!(
            "nf_tables batch on table {FAMILY} {}: {:?}",
            tx.table,
            tx.changes
        );
        self.batches += 1;
        self.nl
            .commit(NFPROTO_INET, |b| super::batch::encode(tx, b))
    }

    fn refused(&self, table: &str, e: NfError) -> Error {
        fw_error(format!(
            "nf_tables refused the changes to table {FAMILY} {table}: {e}"
        ))
    }

    // ---- members: the per-pod hot path, netlink only ----

    fn member_op(&mut self, m: &FwMember, op: ElemOp) -> Result<()> {
        let (table, set, key) = member_target(m)?;
        let done = if m.set == MemberSet::Subnet {
            // A range of an interval set; removed by a delete (the last pod
            // of the subnet only), as interval sets keep no timeouts. Not
            // when the table went with the policy just before (the policy's
            // last pod): a batch right after a deleting commit waits for
            // its grace period (~13 ms), and there is nothing to delete.
            if op != ElemOp::Add && !self.nl.table_exists(NFPROTO_INET, &table).unwrap_or(true) {
                return Ok(());
            }
            let end = range_end(&m.addr);
            self.nl.set_range(
                op == ElemOp::Add,
                NFPROTO_INET,
                &table,
                &set,
                &key,
                end.as_deref(),
            )
        } else {
            self.element_op(op, &table, &set, &key)
        };
        done.map_err(|e| {
            let doing = match op {
                ElemOp::Add => "adding",
                ElemOp::Delete | ElemOp::Expire => "removing",
            };
            let what = FwObject::Member(m.clone());
            if e.is_enoent() {
                fw_error(format!(
                    "{doing} {what}: the firewall objects of policy {}/{} are missing \
                         (table {FAMILY} {table} has no set {set}); the policy must be made first",
                    m.network, m.policy
                ))
            } else {
                fw_error(format!(
                    "{doing} {what} (table {FAMILY} {table}, set {set}): {e}"
                ))
            }
        })
    }

    /// Adds or removes one element of a hash set.
    fn element_op(
        &mut self,
        op: ElemOp,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<(), NfError> {
        // A pod's element goes by expiring where the kernel can: no
        // deleting transaction, no wait at close (see `ElemOp::Expire`).
        let op = match op {
            ElemOp::Delete if crate::kernel::probe::element_timeout_updates() => ElemOp::Expire,
            other => other,
        };
        match self.nl.set_element(op, NFPROTO_INET, table, set, key) {
            // A set without the timeout flag (made before it had one).
            Err(e) if op == ElemOp::Expire && e.errno() == Some(libc::EINVAL) => self
                .nl
                .set_element(ElemOp::Delete, NFPROTO_INET, table, set, key),
            other => other,
        }
    }

    fn observe_member(&mut self, m: &FwMember) -> Result<Presence> {
        let (table, set, key) = member_target(m)?;
        let reading = |e: NfError| {
            fw_error(format!(
                "reading back {} (table {FAMILY} {table}, set {set}): {e}",
                FwObject::Member(m.clone())
            ))
        };
        let present = if m.set == MemberSet::Subnet {
            // The set's ranges (a few: one per pod subnet) cover it?
            let want = super::view::ranges_of(&[m.addr]);
            match self.nl.elements(NFPROTO_INET, &table, &set) {
                Ok(elems) => {
                    super::view::ranges_of_elements(&elems, key.len() as u32).is_some_and(|have| {
                        want.iter()
                            .all(|w| have.iter().any(|h| h.0 <= w.0 && w.1 <= h.1))
                    })
                }
                Err(e) if e.is_enoent() => false,
                Err(e) => return Err(reading(e)),
            }
        } else {
            self.nl
                .has_element(NFPROTO_INET, &table, &set, &key)
                .map_err(reading)?
        };
        Ok(if present {
            Presence::Present
        } else {
            Presence::Missing
        })
    }

    // ---- the exemption's iptables part ----

    /// Per foreign chain and iptables command where the chain exists: what
    /// it holds, and the RETURN rules the exemption wants there.
    fn return_rules(
        &mut self,
        e: &FwExemption,
    ) -> Result<Vec<(Tool, ChainState, Vec<ReturnRule>)>> {
        let mut found = Vec::new();
        for chain in &e.chains {
            for tool in Tool::all() {
                let rules: Vec<ReturnRule> = e
                    .cidrs
                    .iter()
                    .filter(|c| Family::of_net(c) == tool.family)
                    .map(|cidr| ReturnRule {
                        chain: chain.clone(),
                        cidr: cidr.trunc(),
                        network: e.network.clone(),
                    })
                    .collect();
                if rules.is_empty() {
                    continue;
                }
                let state = self.xt.read_chain(&mut self.nl, tool, chain, &e.network)?;
                if state != ChainState::Absent {
                    found.push((tool, state, rules));
                }
            }
        }
        Ok(found)
    }

    /// The wanted rules that are not in the chain.
    fn missing_returns<'r>(
        &mut self,
        tool: Tool,
        state: &ChainState,
        rules: &'r [ReturnRule],
    ) -> Result<Vec<&'r ReturnRule>> {
        let mut missing = Vec::new();
        for rule in rules {
            let there = match state {
                ChainState::Absent => false,
                ChainState::Present(sources) => sources.contains(&rule.cidr),
                ChainState::Unreadable => self.xt.check(tool, rule)?,
            };
            if !there {
                missing.push(rule);
            }
        }
        Ok(missing)
    }

    fn ensure_exemption(&mut self, e: &FwExemption) -> Result<()> {
        self.ensure_plan(&exemption_plan(e)?)?;
        for (tool, state, rules) in self.return_rules(e)? {
            let missing = self.missing_returns(tool, &state, &rules)?;
            if missing.is_empty() {
                continue;
            }
            if !self.xt.installed(tool) {
                log::warn!(
                    "{tool} is not installed; cannot put the masquerade exemption of {} into its chain {} \
                     (the nftables exemption still applies)",
                    e.network,
                    rules[0].chain
                );
                continue;
            }
            // Inserting at 1 in reverse keeps the CIDRs' order at the top.
            for rule in missing.into_iter().rev() {
                self.xt.insert(tool, rule)?;
            }
        }
        Ok(())
    }

    fn remove_exemption(&mut self, e: &FwExemption) -> Result<()> {
        // Teardown goes on after a failure and reports the first.
        let mut first_error = self.remove_plan(&exemption_plan(e)?).err();
        match self.return_rules(e) {
            Ok(found) => {
                for (tool, state, rules) in found {
                    for rule in &rules {
                        let there = match &state {
                            ChainState::Present(sources) => sources.contains(&rule.cidr),
                            _ => true,
                        };
                        if there && let Err(err) = self.xt.remove(tool, rule) {
                            first_error.get_or_insert(err);
                        }
                    }
                }
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn observe_exemption(&mut self, e: &FwExemption) -> Result<Presence> {
        let nft = self.observe_plan(&exemption_plan(e)?)?;
        let mut missing = Vec::new();
        let mut present = 0;
        for (tool, state, rules) in self.return_rules(e)? {
            let absent = self.missing_returns(tool, &state, &rules)?;
            present += rules.len() - absent.len();
            for rule in absent {
                missing.push(format!(
                    "no RETURN for {} in {tool} nat chain {}",
                    rule.cidr, rule.chain
                ));
            }
        }
        Ok(match nft {
            Presence::Missing if present == 0 => Presence::Missing,
            Presence::Present if missing.is_empty() => Presence::Present,
            Presence::Missing => {
                missing.insert(
                    0,
                    format!("chain {} is missing", super::ruleset::exemption_chain(e)),
                );
                Presence::Drifted(missing.join("; "))
            }
            Presence::Present => Presence::Drifted(missing.join("; ")),
            Presence::Drifted(why) => {
                missing.insert(0, why);
                Presence::Drifted(missing.join("; "))
            }
        })
    }

    // ---- cleanup ----

    fn cleanup_tables(&mut self, dry_run: bool) -> Result<Vec<String>> {
        let tables: Vec<super::messages::DumpedTable> = self
            .nl
            .tables()
            .map_err(|e| fw_error(format!("listing nftables tables: {e}")))?
            .into_iter()
            .filter(|t| t.name.starts_with(TABLE_PREFIX))
            .collect();
        let done = tables
            .iter()
            .map(|t| format!("nftables table {} {}", family_name(t.family), t.name))
            .collect();
        if !dry_run && !tables.is_empty() {
            // One batch per family (a batch speaks for one), each all or nothing.
            let mut families: Vec<u8> = tables.iter().map(|t| t.family).collect();
            families.sort_unstable();
            families.dedup();
            for family in families {
                self.batches += 1;
                self.nl
                    .commit(family, |b| {
                        for t in tables.iter().filter(|t| t.family == family) {
                            super::batch::delete_table(b, &t.name);
                        }
                    })
                    .map_err(|e| fw_error(format!("deleting gwsteer's nftables tables: {e}")))?;
            }
        }
        Ok(done)
    }

    fn cleanup_iptables(&mut self, dry_run: bool) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for tool in Tool::all() {
            for words in self.xt.owned_rules(&mut self.nl, tool)? {
                done.push(format!("{tool} -t nat {}", words.join(" ")));
                if !dry_run {
                    self.xt.delete_listed(tool, &words)?;
                }
            }
        }
        Ok(done)
    }
}

/// The pod side of a `connmark` policy (see [`pod_connmark_plan`]), made in
/// the calling thread's network namespace — the pod's — by one netlink
/// batch, repaired when a rule dump shows it changed.
pub fn ensure_pod_connmark(policy: &str, ifname: &str, mark: u32, mask: u32) -> Result<()> {
    Nftables::new()?.ensure_plan(&pod_connmark_plan(policy, ifname, mark, mask)?)
}

/// Is the pod side of a `connmark` policy in the calling thread's namespace
/// exactly as planned?
pub fn observe_pod_connmark(policy: &str, ifname: &str, mark: u32, mask: u32) -> Result<Presence> {
    Nftables::new()?.observe_plan(&pod_connmark_plan(policy, ifname, mark, mask)?)
}

/// Removes the pod side of a `connmark` policy: its table, the policy's
/// and interface's alone.
pub fn remove_pod_connmark(policy: &str, ifname: &str) -> Result<()> {
    // Any mark: the removal goes by the table and the owner's names.
    Nftables::new()?.remove_plan(&pod_connmark_plan(policy, ifname, 1, u32::MAX)?)
}

impl Firewall for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn ensure(&mut self, obj: &FwObject) -> Result<()> {
        match obj {
            FwObject::Policy(p) => self.ensure_plan(&policy_plan(p)?),
            FwObject::Member(m) => self.member_op(m, ElemOp::Add),
            FwObject::Exemption(e) => self.ensure_exemption(e),
        }
    }

    fn remove(&mut self, obj: &FwObject) -> Result<()> {
        match obj {
            FwObject::Policy(p) => self.remove_plan(&policy_plan(p)?),
            FwObject::Member(m) => self.member_op(m, ElemOp::Delete),
            FwObject::Exemption(e) => self.remove_exemption(e),
        }
    }

    fn observe(&mut self, obj: &FwObject) -> Result<Presence> {
        match obj {
            FwObject::Policy(p) => self.observe_plan(&policy_plan(p)?),
            FwObject::Member(m) => self.observe_member(m),
            FwObject::Exemption(e) => self.observe_exemption(e),
        }
    }

    fn cleanup(&mut self, dry_run: bool) -> Result<Vec<String>> {
        // Both halves run even if one fails; the first error is reported.
        let tables = self.cleanup_tables(dry_run);
        let rules = self.cleanup_iptables(dry_run);
        let mut done = Vec::new();
        done.extend(tables?);
        done.extend(rules?);
        Ok(done)
    }
}

fn fw_error(msg: String) -> Error {
    Error::new(code::FIREWALL, msg)
}

/// Table, set and key of a member's element (a subnet's: its first address).
fn member_target(m: &FwMember) -> Result<(String, String, Vec<u8>)> {
    let host = m.addr.prefix_len() == m.addr.max_prefix_len();
    if m.set != MemberSet::Subnet && !host {
        return Err(Error::config(format!(
            "firewall member {} of {}/{} is not a host address",
            m.addr, m.network, m.policy
        )));
    }
    let family = Family::of_net(&m.addr);
    Ok((
        table_name(&m.network),
        element_set(&m.policy, m.set, family),
        address_key(m.addr.network()),
    ))
}

fn address_key(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The key after a subnet's last address: where its range ends in an
/// interval set; `None` when it runs to the last address.
fn range_end(net: &IpNet) -> Option<Vec<u8>> {
    let after = |last: u128| last.checked_add(1);
    match net.broadcast() {
        IpAddr::V4(a) => {
            let next = after(u128::from(u32::from(a)))?;
            u32::try_from(next).ok().map(|n| n.to_be_bytes().to_vec())
        }
        IpAddr::V6(a) => after(u128::from(a)).map(|n| n.to_be_bytes().to_vec()),
    }
}

/// The nft name of an `NFPROTO_*` family.
fn family_name(family: u8) -> &'static str {
    match family {
        NFPROTO_INET => "inet",
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        _ => "unknown",
    }
}

/// An executable called `name` in `$PATH` or the usual system directories.
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    super::xtables::find_binary(name)
}
