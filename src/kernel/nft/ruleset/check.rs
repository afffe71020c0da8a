//! A plan against the kernel: cheaply from a rule dump
//! ([`Plan::quick_check`]) or fully from the table's view
//! ([`Plan::compare`]).

use std::collections::BTreeSet;

use super::*;

impl Plan {
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

fn is_anonymous(set: &str) -> bool {
    set.starts_with("__set")
}

/// The named sets a rule looks up.
pub(super) fn stmt_refs(rule: &[Stmt]) -> BTreeSet<String> {
    rule.iter()
        .filter_map(Stmt::set_ref)
        .map(str::to_string)
        .collect()
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
